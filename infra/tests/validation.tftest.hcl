# Bad variables fail at plan time with the variable's own message.

mock_provider "google" {}

variables {
  project_id    = "zeta-swarm-test"
  contact_email = "owner@example.org"
}

run "prefix_too_long" {
  command = plan
  variables {
    prefix = "a-prefix-far-too-long"
  }
  expect_failures = [var.prefix]
}

run "prefix_uppercase" {
  command = plan
  variables {
    prefix = "ZS"
  }
  expect_failures = [var.prefix]
}

run "project_number_instead_of_id" {
  command = plan
  variables {
    project_id = "123456789012"
  }
  expect_failures = [var.project_id]
}

run "zone_instead_of_region" {
  command = plan
  variables {
    region = "us-central1-a"
  }
  expect_failures = [var.region]
}

run "fractional_quota" {
  command = plan
  variables {
    l4_quota = 2.5
  }
  expect_failures = [var.l4_quota]
}

run "malformed_billing_account" {
  command = plan
  variables {
    billing_account = "billingAccounts/012345-6789AB-CDEF01"
  }
  expect_failures = [var.billing_account]
}

run "bad_contact_email" {
  command = plan
  variables {
    contact_email = "owner"
  }
  expect_failures = [var.contact_email]
}

run "public_impersonator" {
  command = plan
  variables {
    orchestrator_impersonators = ["allUsers"]
  }
  expect_failures = [var.orchestrator_impersonators]
}
