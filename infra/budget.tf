locals {
  # One switch for the budget and its alert channel: both exist only with a billing account.
  budget_enabled = var.billing_account != null
}

resource "google_monitoring_notification_channel" "budget_email" {
  count        = local.budget_enabled ? 1 : 0
  project      = var.project_id
  display_name = "zeta-swarm ${var.prefix} budget alerts"
  type         = "email"
  labels = {
    email_address = var.contact_email
  }
  depends_on = [google_project_service.enabled]
}

resource "google_billing_budget" "swarm" {
  count           = local.budget_enabled ? 1 : 0
  billing_account = var.billing_account
  display_name    = "zeta-swarm ${var.prefix} ${var.project_id}"
  budget_filter {
    projects = ["projects/${data.google_project.this.number}"]
  }
  amount {
    dynamic "specified_amount" {
      for_each = var.budget_amount == null ? [] : [var.budget_amount]
      content {
        currency_code = var.budget_currency
        units         = tostring(specified_amount.value)
      }
    }
    last_period_amount = var.budget_amount == null ? true : null
  }
  dynamic "threshold_rules" {
    for_each = var.budget_thresholds
    content {
      threshold_percent = threshold_rules.value
      spend_basis       = "CURRENT_SPEND"
    }
  }
  # Forecasts warn while a phase is still running, before the money is spent.
  threshold_rules {
    threshold_percent = 1.0
    spend_basis       = "FORECASTED_SPEND"
  }
  all_updates_rule {
    monitoring_notification_channels = [google_monitoring_notification_channel.budget_email[0].id]
    disable_default_iam_recipients   = false
  }
  depends_on = [google_project_service.enabled]
}
