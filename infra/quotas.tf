locals {
  # What one trial holds, per team (configs/teams/*.yaml): Team 2 on g2-standard-8 (1 L4,
  # 8 vCPUs), Team 1 on a2-ultragpu-1g (1 A100 80GB, 12 vCPUs). A G2 or A2 machine draws on
  # its family's vCPU quota as well as the GPU quota, so both are requested.
  vcpus_per_gpu = { l4 = 8, a100_80gb = 12 }

  # Spot VMs (configs/backends/vertex.yaml `spot: true`) draw on the preemptible GPU quotas,
  # not the on-demand ones. These are Vertex AI custom-training quotas of aiplatform.googleapis.com,
  # not Compute Engine's (CPUS-per-project-region, PREEMPTIBLE-NVIDIA-L4-GPUS-per-project-region, ...
  # of compute.googleapis.com count VMs a project creates itself, which a CustomJob is not).
  # Sources for the IDs:
  # - GPUs: Google's Vertex AI samples map accelerators to exactly these Cloud Quotas IDs,
  #   CustomModelTraining{L4GPUs,A10080GBGPUs}PerProjectPerRegion and
  #   CustomModelTrainingPreemptible{...}PerProjectPerRegion (GoogleCloudPlatform/vertex-ai-samples,
  #   notebooks/community/model_garden/docker_source_codes/notebook_util/common_util.py, get_quota_id).
  # - vCPUs: Vertex counts vCPUs per machine family (metrics custom_model_training_g2_cpus and
  #   custom_model_training_a2_cpus; custom_model_training_cpus is N1/E2 only, with the ID
  #   CustomModelTraining[Preemptible]CPUsPerProjectPerRegion). The G2/A2 IDs below follow that
  #   naming; no Google page we could read lists them, so check them before the first apply with
  #   `gcloud beta quotas info describe QUOTA_ID --service=aiplatform.googleapis.com --project=PROJECT_ID`
  #   (docs/infra.md). A wrong ID fails `apply` on that one preference, naming it.
  gpu_quota_ids = {
    l4        = var.spot ? "CustomModelTrainingPreemptibleL4GPUsPerProjectPerRegion" : "CustomModelTrainingL4GPUsPerProjectPerRegion"
    a100_80gb = var.spot ? "CustomModelTrainingPreemptibleA10080GBGPUsPerProjectPerRegion" : "CustomModelTrainingA10080GBGPUsPerProjectPerRegion"
  }

  # Keyed by what is asked for, so adding one is a new entry, not a new resource.
  quota_requests = {
    l4 = {
      quota_id  = local.gpu_quota_ids.l4
      preferred = var.l4_quota
      use       = "Team 2 mini-batch trials, one L4 (g2-standard-8) each${var.spot ? ", on Spot VMs" : ""}"
    }
    a100_80gb = {
      quota_id  = local.gpu_quota_ids.a100_80gb
      preferred = var.a100_80gb_quota
      use       = "Team 1 full-batch trials, one A100 80GB (a2-ultragpu-1g) each${var.spot ? ", on Spot VMs" : ""}"
    }
    g2_vcpus = {
      quota_id  = "CustomModelTrainingG2CPUsPerProjectPerRegion"
      preferred = var.l4_quota * local.vcpus_per_gpu.l4
      use       = "the vCPUs of the g2-standard-8 machines that carry the L4s (8 per L4)"
    }
    a2_vcpus = {
      quota_id  = "CustomModelTrainingA2CPUsPerProjectPerRegion"
      preferred = var.a100_80gb_quota * local.vcpus_per_gpu.a100_80gb
      use       = "the vCPUs of the a2-ultragpu-1g machines that carry the A100s (12 per A100)"
    }
  }
  # A zero request is dropped: lowering a granted quota is a decision for the console, not a
  # side effect of apply.
  quota_preferences = { for name, q in local.quota_requests : name => q if q.preferred > 0 }
}

# A preference is a request: the granted value (output quotas) may be lower, and
# `terraform destroy` leaves the quota in place (the provider only forgets it). The contact
# e-mail must belong to an account with permission to update quotas (provider docs), or the
# request is refused: see var.contact_email.
resource "google_cloud_quotas_quota_preference" "quota" {
  for_each      = local.quota_preferences
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
