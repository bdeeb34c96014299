# Least privilege: storage roles are granted per bucket, actAs per service account, and only
# roles/aiplatform.user and roles/logging.logWriter at project level. No keys, no basic roles.

# --- trainer: read and make datasets, write its own trial outputs -----------------------------

# objectUser, not objectViewer: `orchestrator zeros --backend vertex --out gs://DATA_BUCKET/...`
# (docs/infra.md step 4) runs each shard's `trainer zeros generate` as this account, which writes
# the shard and its record there, and overwrites them when a preempted job is retried. Trials
# only read; the bucket is versioned with soft delete, so an overwrite is recoverable.
resource "google_storage_bucket_iam_member" "trainer_data_writer" {
  bucket = google_storage_bucket.data.name
  role   = "roles/storage.objectUser"
  member = google_service_account.trainer.member
}

# objectUser, not objectCreator: resuming reads checkpoint.pt and each epoch overwrites it.
resource "google_storage_bucket_iam_member" "trainer_runs_writer" {
  bucket = google_storage_bucket.runs.name
  role   = "roles/storage.objectUser"
  member = google_service_account.trainer.member
}

# --- orchestrator: Vizier and CustomJobs, acting as the trainer, reading results --------------

resource "google_project_iam_member" "orchestrator_vertex_user" {
  project = var.project_id
  role    = "roles/aiplatform.user"
  member  = google_service_account.orchestrator.member
}

# Submitting a CustomJob that runs as the trainer needs actAs on that one account only.
resource "google_service_account_iam_member" "orchestrator_acts_as_trainer" {
  service_account_id = google_service_account.trainer.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.orchestrator.member
}

resource "google_storage_bucket_iam_member" "orchestrator_runs_reader" {
  bucket = google_storage_bucket.runs.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.orchestrator.member
}

# `orchestrator zeros` reads the shard records its jobs wrote, then merges: manifest.json is
# written (and rewritten by a rerun) into the dataset, and verify reads every shard.
resource "google_storage_bucket_iam_member" "orchestrator_data_user" {
  bucket = google_storage_bucket.data.name
  role   = "roles/storage.objectUser"
  member = google_service_account.orchestrator.member
}

resource "google_storage_bucket_iam_member" "orchestrator_staging_creator" {
  bucket = google_storage_bucket.staging.name
  role   = "roles/storage.objectCreator"
  member = google_service_account.orchestrator.member
}

resource "google_service_account_iam_member" "orchestrator_impersonators" {
  for_each           = toset(var.orchestrator_impersonators)
  service_account_id = google_service_account.orchestrator.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = each.value
}

# --- images: Vertex AI pulls, the builder pushes ----------------------------------------------

# Vertex AI pulls custom images as its custom code service agent
# (service-NUMBER@gcp-sa-aiplatform-cc.iam.gserviceaccount.com), never as the job's own account.
# Nothing is granted to it here: its project-level role (roles/aiplatform.customCodeServiceAgent)
# already holds artifactregistry.repositories.downloadArtifacts for repositories in this project,
# and a grant to an agent that does not exist yet (Vertex creates it on first use) fails the first
# apply on a fresh project. Fabric's practice is the same: rely on the agent's role, or create
# the identity first (google_project_service_identity, google-beta only).

# Before it launches anything, the orchestrator pins the trainer image to its digest (get tag, get
# image: artifactregistry.tags.get and .dockerimages.get), which roles/aiplatform.user does not hold.
resource "google_artifact_registry_repository_iam_member" "orchestrator_image_reader" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = google_service_account.orchestrator.member
}

resource "google_artifact_registry_repository_iam_member" "builder_image_writer" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.builder.member
}

# `gcloud builds submit` uploads the source tarball to the staging bucket; the build reads it back.
resource "google_storage_bucket_iam_member" "builder_staging_reader" {
  bucket = google_storage_bucket.staging.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.builder.member
}

# A build running as a user-managed account must write its own logs.
resource "google_project_iam_member" "builder_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.builder.member
}

# --- access logs: Cloud Storage delivers usage logs as this Google-owned group ----------------

resource "google_storage_bucket_iam_member" "access_log_writer" {
  bucket = google_storage_bucket.access_logs.name
  role   = "roles/storage.objectCreator"
  member = "group:cloud-storage-analytics@google.com"
}
