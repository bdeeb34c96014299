# `make infra-outputs` saves `terraform output -json`; the orchestrator reads it
# (orchestrator/src/orchestrator/infra_outputs.py, REQUIRED). Each output the orchestrator
# uses depends on the IAM that makes it usable, so a saved value is never ahead of its grants.

output "project_id" {
  description = "Project that runs the Vertex AI jobs and Vizier studies."
  value       = var.project_id
  depends_on  = [google_project_service.enabled, google_project_iam_member.orchestrator_vertex_user]
}

output "region" {
  description = "Region of the Vertex AI jobs, buckets and Docker repository."
  value       = var.region
  depends_on  = [google_cloud_quotas_quota_preference.quota]
}

output "data_bucket" {
  description = "Bucket name (no gs://) holding the zeros datasets; trials read it, `orchestrator zeros` jobs write it."
  value       = google_storage_bucket.data.name
  depends_on = [
    google_storage_bucket_iam_member.trainer_data_writer,
    google_storage_bucket_iam_member.orchestrator_data_user,
  ]
}

output "runs_bucket" {
  description = "Bucket name (no gs://) for trial outputs and checkpoints: the trainer writes gs://RUNS/<study>/trials/<id>/, the orchestrator reads it."
  value       = google_storage_bucket.runs.name
  depends_on = [
    google_storage_bucket_iam_member.trainer_runs_writer,
    google_storage_bucket_iam_member.orchestrator_runs_reader,
  ]
}

output "staging_bucket" {
  description = "Bucket name (no gs://) for Vertex AI SDK staging and Cloud Build sources; objects expire after 7 days."
  value       = google_storage_bucket.staging.name
  depends_on = [
    google_storage_bucket_iam_member.orchestrator_staging_creator,
    google_storage_bucket_iam_member.builder_staging_reader,
  ]
}

output "image_repository" {
  description = "Docker repository path; the trainer image is IMAGE_REPOSITORY/trainer:TAG, TAG the content hash of its sources (python -m orchestrator.image_tag)."
  value       = "${google_artifact_registry_repository.images.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
  depends_on = [
    google_artifact_registry_repository_iam_member.builder_image_writer,
    google_artifact_registry_repository_iam_member.orchestrator_image_reader,
  ]
}

output "trainer_service_account" {
  description = "E-mail of the service account every Vertex AI trial runs as."
  value       = google_service_account.trainer.email
  depends_on = [
    google_service_account_iam_member.orchestrator_acts_as_trainer,
    google_storage_bucket_iam_member.trainer_data_writer,
    google_storage_bucket_iam_member.trainer_runs_writer,
  ]
}

output "orchestrator_service_account" {
  description = "E-mail of the service account the swarm controller runs as (impersonate it, or attach it to the VM that runs the controller)."
  value       = google_service_account.orchestrator.email
  depends_on = [
    google_project_iam_member.orchestrator_vertex_user,
    google_service_account_iam_member.orchestrator_acts_as_trainer,
    google_service_account_iam_member.orchestrator_impersonators,
  ]
}

output "builder_service_account" {
  description = "E-mail of the service account `make image` runs Cloud Build as."
  value       = google_service_account.builder.email
  depends_on = [
    google_artifact_registry_repository_iam_member.builder_image_writer,
    google_storage_bucket_iam_member.builder_staging_reader,
    google_project_iam_member.builder_log_writer,
  ]
}

output "quotas" {
  description = "Per request (GPUs, and the vCPUs of their machine family): the quota ID, the value asked for and the value granted so far (granted may lag or be lower)."
  value = {
    for k, p in google_cloud_quotas_quota_preference.quota : k => {
      quota_id  = p.quota_id
      preferred = p.quota_config[0].preferred_value
      granted   = p.quota_config[0].granted_value
    }
  }
}

output "tensorboard" {
  description = "Resource name of the Vertex AI TensorBoard the trials' CustomJobs are attached to; \"\" when var.tensorboard is false."
  value       = var.tensorboard ? google_vertex_ai_tensorboard.trials[0].id : ""
  depends_on  = [google_project_iam_member.trainer_tensorboard_writer]
}
