# Provider range: google_cloud_quotas_quota_preference arrived in 5.23 and its
# preferred_value permadiff was fixed in 7.9; 6.x and 7.x both carry every resource
# and argument used here (7.0 only changed defaults we set explicitly, such as
# disable_on_destroy). The upper bound keeps a future 8.0 with breaking changes
# from being picked up by a fresh `terraform init`.
terraform {
  required_version = ">= 1.6"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
  }
}
