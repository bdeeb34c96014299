"""infra/ through checkov (zero failed checks, skips only inline with a reason) and `terraform test`."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from infra_stack import CHECKOV, INFRA, TERRAFORM, tool_env


def run_checkov(directory) -> dict:
    result = subprocess.run(
        # --skip-download: no network lookups of guideline links; the checks are all built in.
        [
            str(CHECKOV),
            "-d",
            str(directory),
            "--framework",
            "terraform",
            "--compact",
            "-o",
            "json",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        env=tool_env(),
        timeout=180,
    )
    assert result.stdout.strip(), (
        f"checkov printed nothing (exit {result.returncode}):\n{result.stderr[-2000:]}"
    )
    report = json.loads(result.stdout)
    report["exit_code"] = result.returncode
    return report


@pytest.fixture(scope="module")
def checkov_report() -> dict:
    if not CHECKOV.exists():
        pytest.fail(f"checkov not found at {CHECKOV}: run `make install`")
    return run_checkov(INFRA)


def test_checkov_has_no_failed_checks(checkov_report):
    summary = checkov_report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for c in checkov_report["results"]["failed_checks"]
    ]
    assert failed == [] and summary["failed"] == 0
    assert summary["parsing_errors"] == 0
    assert checkov_report["exit_code"] == 0
    # It really looked: every bucket and IAM grant is a resource it scanned.
    assert summary["resource_count"] >= 25 and summary["passed"] >= 30


def test_checkov_skips_are_inline_with_reasons(checkov_report):
    skipped = checkov_report["results"]["skipped_checks"]
    reasons = {(c["check_id"], c["resource"]): c["check_result"].get("suppress_comment", "") for c in skipped}
    assert set(reasons) == {
        ("CKV_GCP_62", "google_storage_bucket.access_logs"),
        ("CKV_GCP_78", "google_storage_bucket.staging"),
        ("CKV_GCP_84", "google_artifact_registry_repository.images"),
        ("CKV2_GCP_26", "google_vertex_ai_tensorboard.trials"),
    }
    for key, reason in reasons.items():
        assert len(reason) > 40, f"{key}: a skip needs its reason"


def test_checkov_catches_a_public_bucket(tmp_path):
    for path in INFRA.glob("*.tf"):
        text = path.read_text()
        if path.name == "storage.tf":
            text = text.replace(
                'public_access_prevention    = "enforced"', 'public_access_prevention    = "inherited"'
            )
        (tmp_path / path.name).write_text(text)
    report = run_checkov(tmp_path)
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert failed == {"CKV_GCP_114"} and report["exit_code"] != 0


def _google_provider_installable(workdir) -> tuple[bool, str]:
    """Try `terraform init`; where the registry cannot be reached it fails within a second."""
    init = subprocess.run(
        [TERRAFORM, f"-chdir={workdir}", "init", "-backend=false", "-input=false", "-no-color"],
        capture_output=True,
        text=True,
        env=tool_env(),
        timeout=300,
    )
    output = (init.stderr + init.stdout).splitlines()
    errors = [line.strip(" │") for line in output if "Error:" in line] or [""]
    return init.returncode == 0, errors[0]


@pytest.mark.terraform_provider
def test_terraform_test_with_mocked_provider(tmp_path):
    # A copy, so .terraform/ and the lock file never land in the shared tree.
    work = tmp_path / "infra"
    shutil.copytree(
        INFRA, work, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*", "terraform.tfvars")
    )
    installed, error = _google_provider_installable(work)
    if not installed:
        pytest.skip(
            "terraform test needs the hashicorp/google provider, which `terraform init` could not download "
            f"here ({error[:120]}); it runs where registry.terraform.io or a provider mirror is reachable"
        )
    result = subprocess.run(
        [TERRAFORM, f"-chdir={work}", "test", "-no-color"],
        capture_output=True,
        text=True,
        env=tool_env(),
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 failed" in result.stdout
