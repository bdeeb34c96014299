# Provider range: 7.9 is the first release where google_cloud_quotas_quota_preference has no
# `preferred_value` permadiff (a plan after every apply otherwise), and it is after 6.17, the
# first to accept the registry cleanup policies' "7d"/"90d" durations. The upper bound keeps a
# future 8.0 with breaking changes from being picked up by a fresh `terraform init`. The exact
# build is fixed by infra/.terraform.lock.hcl, committed after the first init (docs/infra.md).
terraform {
  required_version = ">= 1.6"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 7.9, < 8.0"
    }
  }
}
