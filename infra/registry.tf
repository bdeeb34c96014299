locals {
  repository_id = "${var.prefix}-images"
}

resource "google_artifact_registry_repository" "images" {
  # checkov:skip=CKV_GCP_84:Google-managed encryption is enough for an image built from this public repository; CMEK would add a KMS key and its IAM for no confidentiality gain.
  project       = var.project_id
  location      = var.region
  repository_id = local.repository_id
  format        = "DOCKER"
  description   = "zeta-swarm trainer images, tagged with the git commit they were built from."
  labels        = local.labels
  # A tag is a git SHA that trial records point at; it must never move to other content.
  docker_config {
    immutable_tags = true
  }
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "delete-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "7d"
    }
  }
  cleanup_policies {
    id     = "delete-old-tagged"
    action = "DELETE"
    condition {
      tag_state  = "TAGGED"
      older_than = "90d"
    }
  }
  # KEEP wins over DELETE: recent builds survive however old, so a long study can still retry its trials.
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }
  depends_on = [google_project_service.enabled]
}
