locals {
  service_account_ids = {
    builder      = "${var.prefix}-builder"
    orchestrator = "${var.prefix}-orchestrator"
    trainer      = "${var.prefix}-trainer"
  }
}

# Identity of every Vertex AI trial: reads datasets, writes its own outputs and checkpoints.
resource "google_service_account" "trainer" {
  project      = var.project_id
  account_id   = local.service_account_ids.trainer
  display_name = "zeta-swarm trainer (${var.prefix})"
  description  = "Runs zeta-swarm trials on Vertex AI: reads the data bucket, writes the runs bucket. Managed by Terraform."
  depends_on   = [google_project_service.enabled]
}

# Identity of the swarm controller: drives Vizier, submits and cancels CustomJobs as the trainer.
resource "google_service_account" "orchestrator" {
  project      = var.project_id
  account_id   = local.service_account_ids.orchestrator
  display_name = "zeta-swarm orchestrator (${var.prefix})"
  description  = "Runs the zeta-swarm controller: Vizier studies, Vertex AI CustomJobs acting as the trainer, reads trial results. Managed by Terraform."
  depends_on   = [google_project_service.enabled]
}

# Identity of `make image` builds, so pushing does not depend on the default compute account's grants.
resource "google_service_account" "builder" {
  project      = var.project_id
  account_id   = local.service_account_ids.builder
  display_name = "zeta-swarm image builder (${var.prefix})"
  description  = "Runs Cloud Build for the zeta-swarm trainer image: reads uploaded sources from staging, pushes to the Docker repository. Managed by Terraform."
  depends_on   = [google_project_service.enabled]
}
