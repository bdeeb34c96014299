locals {
  # Keyed by accelerator so adding one is a new entry, not a new resource.
  gpu_quota_requests = {
    l4 = {
      quota_id  = "CustomModelTrainingL4GPUsPerProjectPerRegion"
      preferred = var.l4_quota
      use       = "Team 2 mini-batch trials, one L4 (g2-standard-8) each"
    }
    a100_80gb = {
      quota_id  = "CustomModelTrainingA10080GBGPUsPerProjectPerRegion"
      preferred = var.a100_80gb_quota
      use       = "the Team 1 full-batch control, one A100 80GB (a2-ultragpu-1g)"
    }
  }
  # A zero request is dropped: lowering a granted quota is a decision for the console, not a
  # side effect of apply.
  gpu_quotas = { for name, q in local.gpu_quota_requests : name => q if q.preferred > 0 }
}

# A preference is a request: the granted value (output gpu_quotas) may be lower, and
# `terraform destroy` leaves the quota in place (the provider only forgets it).
resource "google_cloud_quotas_quota_preference" "gpu" {
  for_each      = local.gpu_quotas
  parent        = "projects/${var.project_id}"
  name          = "${var.prefix}-${replace(each.key, "_", "-")}-${var.region}"
  service       = "aiplatform.googleapis.com"
  quota_id      = each.value.quota_id
  dimensions    = { region = var.region }
  contact_email = var.contact_email
  justification = "zeta-swarm hyperparameter search on Vertex AI custom training: ${each.value.use}."
  quota_config {
    preferred_value = each.value.preferred
  }
  depends_on = [google_project_service.enabled]
}
