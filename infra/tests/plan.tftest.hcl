# Plan-time properties of the stack, against a mocked google provider (no cloud calls).
# Run: terraform -chdir=infra init -backend=false && terraform -chdir=infra test

mock_provider "google" {
  mock_data "google_project" {
    defaults = {
      number = "123456789012"
    }
  }
}

variables {
  project_id    = "zeta-swarm-test"
  contact_email = "owner@example.org"
}

run "names_follow_prefix_and_project" {
  command = plan

  assert {
    condition     = google_storage_bucket.data.name == "zs-zeta-swarm-test-data"
    error_message = "data bucket name must be PREFIX-PROJECT-data"
  }
  assert {
    condition     = google_storage_bucket.runs.name == "zs-zeta-swarm-test-runs"
    error_message = "runs bucket name must be PREFIX-PROJECT-runs"
  }
  assert {
    condition     = google_storage_bucket.staging.name == "zs-zeta-swarm-test-staging"
    error_message = "staging bucket name must be PREFIX-PROJECT-staging"
  }
  assert {
    condition     = google_service_account.trainer.account_id == "zs-trainer" && google_service_account.orchestrator.account_id == "zs-orchestrator"
    error_message = "service account ids must be PREFIX-trainer and PREFIX-orchestrator"
  }
  assert {
    condition     = output.image_repository == "us-central1-docker.pkg.dev/zeta-swarm-test/zs-images"
    error_message = "image_repository must be REGION-docker.pkg.dev/PROJECT/PREFIX-images"
  }
}

run "buckets_are_private_and_kept" {
  command = plan

  assert {
    condition = alltrue([
      for b in [google_storage_bucket.access_logs, google_storage_bucket.data, google_storage_bucket.runs, google_storage_bucket.staging] :
      b.public_access_prevention == "enforced" && b.uniform_bucket_level_access && !b.force_destroy
    ])
    error_message = "every bucket needs public access prevention enforced, uniform access and no force_destroy"
  }
  assert {
    condition     = google_storage_bucket.data.versioning[0].enabled && google_storage_bucket.runs.versioning[0].enabled
    error_message = "data and runs buckets must keep object versions"
  }
  assert {
    condition     = google_storage_bucket.runs.logging[0].log_bucket == "zs-zeta-swarm-test-access-logs"
    error_message = "runs bucket must log access to the dedicated access-log bucket"
  }
}

run "quota_preferences" {
  command = plan

  assert {
    condition     = google_cloud_quotas_quota_preference.quota["l4"].quota_id == "CustomModelTrainingL4GPUsPerProjectPerRegion"
    error_message = "L4 preference must target CustomModelTrainingL4GPUsPerProjectPerRegion"
  }
  assert {
    condition     = google_cloud_quotas_quota_preference.quota["a100_80gb"].quota_id == "CustomModelTrainingA10080GBGPUsPerProjectPerRegion"
    error_message = "A100 80GB preference must target CustomModelTrainingA10080GBGPUsPerProjectPerRegion"
  }
  assert {
    condition = alltrue([
      for p in google_cloud_quotas_quota_preference.quota :
      p.service == "aiplatform.googleapis.com" && p.dimensions["region"] == "us-central1" && p.parent == "projects/zeta-swarm-test"
    ])
    error_message = "quota preferences must be for aiplatform.googleapis.com in the stack's region"
  }
  assert {
    condition     = tonumber(google_cloud_quotas_quota_preference.quota["l4"].quota_config[0].preferred_value) == 55
    error_message = "L4 preference must default to 55 GPUs"
  }
  assert {
    condition     = tonumber(google_cloud_quotas_quota_preference.quota["g2_vcpus"].quota_config[0].preferred_value) == 440
    error_message = "G2 vCPU preference must be 8 per L4"
  }
}

run "spot_asks_for_preemptible_gpus" {
  command = plan
  variables {
    spot = true
  }

  assert {
    condition     = google_cloud_quotas_quota_preference.quota["l4"].quota_id == "CustomModelTrainingPreemptibleL4GPUsPerProjectPerRegion"
    error_message = "with spot the L4 preference must target the preemptible quota"
  }
}

run "zero_quota_requests_nothing" {
  command = plan
  variables {
    a100_80gb_quota = 0
  }

  assert {
    condition     = !contains(keys(google_cloud_quotas_quota_preference.quota), "a100_80gb") && !contains(keys(google_cloud_quotas_quota_preference.quota), "a2_vcpus")
    error_message = "a zero quota must not create a preference, for the GPUs or their vCPUs"
  }
}

run "no_budget_without_billing_account" {
  command = plan

  assert {
    condition     = length(google_billing_budget.swarm) == 0 && length(google_monitoring_notification_channel.budget_email) == 0
    error_message = "budget and its alert channel must not exist without billing_account"
  }
}

# apply, not plan: the project number comes from a data source read after the APIs are enabled.
run "budget_with_billing_account" {
  command = apply
  variables {
    billing_account = "012345-6789AB-CDEF01"
    budget_amount   = 2000
  }

  assert {
    condition     = length(google_billing_budget.swarm) == 1
    error_message = "a billing account must create one budget"
  }
  assert {
    condition     = google_billing_budget.swarm[0].amount[0].specified_amount[0].units == "2000"
    error_message = "budget amount must be budget_amount in whole units"
  }
  assert {
    condition     = length(google_billing_budget.swarm[0].threshold_rules) == 4
    error_message = "three spend thresholds plus one forecast threshold expected"
  }
  assert {
    condition     = length(google_billing_budget.swarm[0].budget_filter[0].projects) == 1 && contains(google_billing_budget.swarm[0].budget_filter[0].projects, "projects/123456789012")
    error_message = "budget must be scoped to this project by number"
  }
}

run "orchestrator_acts_only_as_trainer" {
  command = apply

  assert {
    condition     = google_service_account_iam_member.orchestrator_acts_as_trainer.role == "roles/iam.serviceAccountUser"
    error_message = "orchestrator needs serviceAccountUser on the trainer account"
  }
  assert {
    condition     = google_service_account_iam_member.orchestrator_acts_as_trainer.service_account_id == google_service_account.trainer.name
    error_message = "serviceAccountUser must be granted on the trainer account, not elsewhere"
  }
  assert {
    condition     = google_artifact_registry_repository_iam_member.orchestrator_image_reader.role == "roles/artifactregistry.reader"
    error_message = "the orchestrator must be able to read the image tag and digest before a launch"
  }
}
