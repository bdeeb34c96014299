locals {
  services = toset([
    "aiplatform.googleapis.com",           # Vertex AI CustomJobs and Vizier studies
    "artifactregistry.googleapis.com",     # the trainer image repository
    "billingbudgets.googleapis.com",       # the optional budget
    "cloudbuild.googleapis.com",           # `make image` builds remotely
    "cloudquotas.googleapis.com",          # GPU quota preferences
    "cloudresourcemanager.googleapis.com", # project lookup and project-level IAM
    "iam.googleapis.com",                  # service accounts
    "monitoring.googleapis.com",           # the budget alert e-mail channel
    "storage.googleapis.com",              # data, runs and staging buckets
  ])
}

resource "google_project_service" "enabled" {
  for_each = local.services
  project  = var.project_id
  service  = each.value
  # Other workloads in the project may use these APIs; destroying the swarm must not break them.
  disable_on_destroy = false
}

data "google_project" "this" {
  project_id = var.project_id
  depends_on = [google_project_service.enabled]
}
