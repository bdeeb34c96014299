# Optional: a Vertex AI TensorBoard instance. With it, every trial's CustomJob is submitted with
# `tensorboard=` (and its base output dir), so the event files the trainer writes under
# AIP_TENSORBOARD_LOG_DIR show up there, per trial, while the trial runs.
resource "google_vertex_ai_tensorboard" "trials" {
  # checkov:skip=CKV2_GCP_26:Training curves of a public-data search; Google-managed encryption is enough and CMEK would add a KMS key and its IAM for no confidentiality gain.
  count        = var.tensorboard ? 1 : 0
  project      = var.project_id
  region       = var.region
  display_name = "${var.prefix}-trials"
  description  = "zeta-swarm trial curves (one experiment per CustomJob). Managed by Terraform."
  labels       = local.labels
  depends_on   = [google_project_service.enabled]
}

# The trials upload their event files to the instance as the trainer's own account.
resource "google_project_iam_member" "trainer_tensorboard_writer" {
  count   = var.tensorboard ? 1 : 0
  project = var.project_id
  role    = "roles/aiplatform.user"
  member  = google_service_account.trainer.member
}
