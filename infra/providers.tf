provider "google" {
  project = var.project_id
  region  = var.region
  # The Billing Budgets and Cloud Quotas APIs reject user credentials (ADC from
  # `gcloud auth application-default login`) unless requests name a quota project.
  billing_project       = var.project_id
  user_project_override = true
}
