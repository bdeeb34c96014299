variable "project_id" {
  description = "Existing Google Cloud project that hosts the swarm (buckets, registry, service accounts, Vertex AI jobs)."
  type        = string
  nullable    = false
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID (6-30 characters: lowercase letters, digits, hyphens; starts with a letter), not a project name or number. Find it with `gcloud projects list`."
  }
}

variable "region" {
  description = "Region for buckets, the Docker repository, Vertex AI jobs and the GPU quota preferences. us-central1 offers both L4 and A100 80GB for custom training."
  type        = string
  default     = "us-central1"
  nullable    = false
  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region such as us-central1 (a region, not a zone like us-central1-a)."
  }
}

variable "prefix" {
  description = "Short prefix for every resource name, so several swarms can share a project. Bucket names are PREFIX-PROJECT_ID-<role> (at most 59 characters) and service account ids PREFIX-<role> (at most 29)."
  type        = string
  default     = "zs"
  nullable    = false
  validation {
    # 16 keeps "<prefix>-orchestrator" within the 30-character service account id limit
    # and "<prefix>-<project_id>-access-logs" within the 63-character bucket name limit.
    condition     = can(regex("^[a-z][a-z0-9-]{0,14}[a-z0-9]$", var.prefix))
    error_message = "prefix must be 2-16 characters of lowercase letters, digits and hyphens, start with a letter and not end with a hyphen (for example \"zs\")."
  }
}

variable "l4_quota" {
  description = "NVIDIA L4 GPUs to request for Vertex AI custom training in the region (CustomModelTrainingL4GPUsPerProjectPerRegion, or the Preemptible one with spot), plus 8 G2 vCPUs each: one per Team 2 trial, so 55 runs the cloud profile's widest phase (phase 3: 50 Team 2 trials at once, and headroom) fully parallel. 0 requests nothing."
  type        = number
  default     = 55
  nullable    = false
  validation {
    condition     = var.l4_quota >= 0 && var.l4_quota <= 1000 && floor(var.l4_quota) == var.l4_quota
    error_message = "l4_quota must be a whole number of GPUs between 0 and 1000; use 0 to leave the L4 quota alone."
  }
}

variable "a100_80gb_quota" {
  description = "NVIDIA A100 80GB GPUs to request for Vertex AI custom training in the region (CustomModelTrainingA10080GBGPUsPerProjectPerRegion, or the Preemptible one with spot), plus 12 A2 vCPUs each: one per Team 1 trial, so 5 runs phase 3's full-batch control (5 seeds) at once. 0 requests nothing."
  type        = number
  default     = 5
  nullable    = false
  validation {
    condition     = var.a100_80gb_quota >= 0 && var.a100_80gb_quota <= 64 && floor(var.a100_80gb_quota) == var.a100_80gb_quota
    error_message = "a100_80gb_quota must be a whole number of GPUs between 0 and 64; use 0 to leave the A100 80GB quota alone."
  }
}

variable "spot" {
  description = "Request the preemptible GPU quotas that Spot VMs draw on instead of the on-demand ones; set it as configs/backends/vertex.yaml sets `spot`."
  type        = bool
  default     = false
  nullable    = false
}

variable "tensorboard" {
  description = "Create a Vertex AI TensorBoard instance and attach every trial's CustomJob to it (output tensorboard), so the trainer's event files show up there."
  type        = bool
  default     = false
  nullable    = false
}

variable "billing_account" {
  description = "Billing account ID (XXXXXX-XXXXXX-XXXXXX) paying for the project. When set, a budget with e-mail alerts is created on it; null creates no budget. Needs roles/billing.costsManager on the account."
  type        = string
  default     = null
  validation {
    condition     = var.billing_account == null || can(regex("^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$", var.billing_account))
    error_message = "billing_account must look like 012345-6789AB-CDEF01 (see `gcloud billing accounts list`), or be null for no budget."
  }
}

variable "budget_amount" {
  description = "Monthly budget in budget_currency units for this project. null tracks last month's spend instead of a fixed amount. Used only when billing_account is set."
  type        = number
  default     = null
  validation {
    condition     = var.budget_amount == null || try(var.budget_amount > 0 && floor(var.budget_amount) == var.budget_amount, false)
    error_message = "budget_amount must be a positive whole number of currency units (for example 2000), or null to track last month's spend."
  }
}

variable "budget_currency" {
  description = "ISO 4217 currency code of budget_amount. It must equal the billing account's currency or the budget is rejected."
  type        = string
  default     = "USD"
  nullable    = false
  validation {
    condition     = can(regex("^[A-Z]{3}$", var.budget_currency))
    error_message = "budget_currency must be a three-letter ISO 4217 code in capitals, such as USD or EUR."
  }
}

variable "budget_thresholds" {
  description = "Fractions of the budget (1.0 = 100%) at which actual spend sends an alert; a forecast alert at 100% is always added."
  type        = list(number)
  default     = [0.5, 0.9, 1.0]
  nullable    = false
  validation {
    condition     = length(var.budget_thresholds) > 0 && alltrue([for t in var.budget_thresholds : t > 0 && t <= 10])
    error_message = "budget_thresholds must be a non-empty list of fractions in (0, 10], for example [0.5, 0.9, 1.0]."
  }
}

variable "contact_email" {
  description = "E-mail address that Google contacts about the quota requests and that receives budget alerts. It must belong to an account that may update quotas in this project (roles/cloudquotas.admin or Owner; provider docs for google_cloud_quotas_quota_preference), or the quota requests are refused: use the platform owner's own address."
  type        = string
  nullable    = false
  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$", var.contact_email))
    error_message = "contact_email must be an e-mail address such as owner@example.org."
  }
}

variable "orchestrator_impersonators" {
  description = "Principals allowed to run the orchestrator as its service account (roles/iam.serviceAccountTokenCreator on that account only), e.g. [\"user:alice@example.org\", \"group:zeta-team@example.org\"]."
  type        = list(string)
  default     = []
  nullable    = false
  validation {
    condition     = alltrue([for m in var.orchestrator_impersonators : can(regex("^(user|group|serviceAccount):[^@\\s]+@[^@\\s]+$", m))])
    error_message = "orchestrator_impersonators entries must be IAM members of the form user:EMAIL, group:EMAIL or serviceAccount:EMAIL (never allUsers or allAuthenticatedUsers)."
  }
}

variable "labels" {
  description = "Extra labels for buckets and the Docker repository; app=zeta-swarm and managed-by=terraform are always added."
  type        = map(string)
  default     = {}
  nullable    = false
  validation {
    condition = alltrue([
      for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))
    ])
    error_message = "labels keys must start with a lowercase letter and use only lowercase letters, digits, _ and - (at most 63 characters); values the same without the first-letter rule."
  }
}
