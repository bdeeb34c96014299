locals {
  labels = merge(var.labels, { app = "zeta-swarm", "managed-by" = "terraform" })
  # Bucket names are global, so the project ID keeps two projects with the same prefix apart.
  bucket_names = {
    access_logs = "${var.prefix}-${var.project_id}-access-logs"
    data        = "${var.prefix}-${var.project_id}-data"
    runs        = "${var.prefix}-${var.project_id}-runs"
    staging     = "${var.prefix}-${var.project_id}-staging"
  }
  # 7 days, the service minimum: deleted checkpoints and datasets stay recoverable for a week.
  soft_delete_seconds = 604800
}

resource "google_storage_bucket" "access_logs" {
  # checkov:skip=CKV_GCP_62:This bucket is the access-log sink for the others; logging it into itself would recurse.
  name                        = local.bucket_names.access_logs
  project                     = var.project_id
  location                    = var.region
  labels                      = local.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  versioning {
    enabled = true
  }
  soft_delete_policy {
    retention_duration_seconds = local.soft_delete_seconds
  }
  lifecycle_rule {
    condition {
      age = 365
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 7
    }
    action {
      type = "Delete"
    }
  }
  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket" "data" {
  name                        = local.bucket_names.data
  project                     = var.project_id
  location                    = var.region
  labels                      = local.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  # Datasets are verified by sha256 in their manifest; versions let a bad upload be rolled back.
  versioning {
    enabled = true
  }
  soft_delete_policy {
    retention_duration_seconds = local.soft_delete_seconds
  }
  logging {
    log_bucket        = google_storage_bucket.access_logs.name
    log_object_prefix = "data/"
  }
  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket" "runs" {
  name                        = local.bucket_names.runs
  project                     = var.project_id
  location                    = var.region
  labels                      = local.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  versioning {
    enabled = true
  }
  soft_delete_policy {
    retention_duration_seconds = local.soft_delete_seconds
  }
  logging {
    log_bucket        = google_storage_bucket.access_logs.name
    log_object_prefix = "runs/"
  }
  # checkpoint.pt is rewritten every epoch; the superseded versions are worthless after a few days.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 3
    }
    action {
      type = "Delete"
    }
  }
  # Finished phases are read by `orchestrator report` for a few weeks, then rarely.
  lifecycle_rule {
    condition {
      age                   = 30
      matches_storage_class = ["STANDARD"]
    }
    action {
      type          = "SetStorageClass"
      storage_class = "NEARLINE"
    }
  }
  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }
  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket" "staging" {
  # checkov:skip=CKV_GCP_78:Staging holds throwaway SDK and Cloud Build uploads that are recreated on every submit; old versions would only add cost.
  name                        = local.bucket_names.staging
  project                     = var.project_id
  location                    = var.region
  labels                      = local.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  soft_delete_policy {
    retention_duration_seconds = local.soft_delete_seconds
  }
  logging {
    log_bucket        = google_storage_bucket.access_logs.name
    log_object_prefix = "staging/"
  }
  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "Delete"
    }
  }
  depends_on = [google_project_service.enabled]
}
