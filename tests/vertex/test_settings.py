"""Cloud settings: Terraform outputs + configs/backends/vertex.yaml, image pinning, backoff."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from google.api_core import exceptions
from google.auth import exceptions as auth_exceptions
from orchestrator.errors import ConfigError, RetryableCloudError
from orchestrator.infra_outputs import load_infra_outputs
from orchestrator.vertex_settings import (
    CloudCalls,
    MachineSpec,
    RetryPolicy,
    VertexSettings,
    load_team_machines,
    load_vertex_settings,
    resolve_image_digest,
)

ROOT = Path(__file__).resolve().parents[2]
VERTEX_YAML = ROOT / "configs" / "backends" / "vertex.yaml"
INFRA_JSON = ROOT / "tests" / "fixtures" / "infra-outputs.json"


def test_terraform_outputs_and_backend_yaml_make_the_settings():
    s = load_vertex_settings(VERTEX_YAML, load_infra_outputs(str(INFRA_JSON), {}))
    assert (s.project, s.region) == ("zeta-swarm-test", "us-central1")
    assert s.runs_bucket == "gs://zs-zeta-swarm-test-runs"
    assert s.staging_bucket == "gs://zs-zeta-swarm-test-staging"
    assert s.trainer_service_account == "zs-trainer@zeta-swarm-test.iam.gserviceaccount.com"
    assert s.machines["fullbatch"] == MachineSpec("a2-ultragpu-1g", "NVIDIA_A100_80GB", 1)
    assert s.machines["minibatch"].describe() == "g2-standard-8 + 1 x NVIDIA_L4"
    image = "us-central1-docker.pkg.dev/zeta-swarm-test/zs-images/trainer:"
    from orchestrator.image_tag import content_tag

    assert s.image_tag_uri == image + content_tag()  # the sources' content hash, as `make image` tags it
    assert s.orchestrator_service_account == "zs-orchestrator@zeta-swarm-test.iam.gserviceaccount.com"
    assert s.trial_dir("phase2-minibatch", "17") == "gs://zs-zeta-swarm-test-runs/phase2-minibatch/trials/17"


def test_flags_override_single_settings():
    infra = load_infra_outputs(str(INFRA_JSON), {"region": "europe-west4"})
    s = load_vertex_settings(VERTEX_YAML, infra, spot=True, image_tag="3f2a9c1", experiment=None)
    assert (s.region, s.spot, s.image_tag, s.experiment) == ("europe-west4", True, "3f2a9c1", None)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("spot: yes please\n", "spot"),
        ("timeout_s: 1.5\n", "timeout_s"),
        ("gpus: 4\n", "gpus"),
        ("retry: {tries: 3}\n", "retry.tries"),
        ("spot: false\ntimeout_s: '600'\n", ":2: timeout_s"),  # strict: a string is not coerced
        ("zeros:\n  cpu: {workers: 4}\n", ":2: zeros.cpu.machine_type"),
        ("spot: [\n", "not valid YAML"),
    ],
)
def test_a_bad_backend_yaml_names_the_file_and_key(tmp_path, text, names):
    (tmp_path / "backends").mkdir()
    (tmp_path / "teams").symlink_to(VERTEX_YAML.parents[1] / "teams")
    bad = tmp_path / "backends" / "vertex.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_vertex_settings(bad, load_infra_outputs(str(INFRA_JSON), {}))
    assert str(bad) in str(e.value) and names in str(e.value)
    assert "\n" not in str(e.value)


def test_a_missing_or_malformed_setting_is_a_config_error(settings):
    with pytest.raises(ConfigError, match="trainer_service_account"):
        VertexSettings(**{**settings.__dict__, "trainer_service_account": ""})
    with pytest.raises(ConfigError, match="image_repository"):
        VertexSettings(**{**settings.__dict__, "image_repository": "docker.io/library/trainer"})


def test_the_image_tag_is_pinned_to_its_digest(settings, registry, calls, credentials, cloud):
    uri = resolve_image_digest(settings, calls, credentials)
    assert uri == f"{settings.image_repository}/trainer@sha256:{'ab' * 32}"
    (tag_req,) = cloud.requests("get_tag")
    assert tag_req.name == (
        "projects/zeta-swarm-test/locations/us-central1/repositories/zeta-swarm/packages/trainer/tags/latest"
    )


def test_an_image_that_was_never_pushed_is_a_config_error(settings, registry, calls, credentials):
    missing = VertexSettings(**{**settings.__dict__, "image_tag": "not-built"})
    with pytest.raises(ConfigError, match="trainer:not-built.*make image"):
        resolve_image_digest(missing, calls, credentials)


def test_transient_errors_back_off_with_jitter_then_succeed(clock):
    calls = CloudCalls(
        RetryPolicy(attempts=6, base_s=2.0, cap_s=10.0), sleeper=clock.sleep, rng=random.Random(3)
    )
    errors = [
        exceptions.TooManyRequests("429"),
        exceptions.ResourceExhausted("quota"),
        exceptions.ServiceUnavailable("503"),
    ]

    def flaky():
        if errors:
            raise errors.pop(0)
        return "ok"

    assert calls.run("flaky", flaky) == "ok"
    assert len(clock.slept) == 3 and calls.backoffs == 3
    for attempt, slept in enumerate(clock.slept):
        assert 0 <= slept <= min(10.0, 2.0 * 2**attempt)
    assert len(set(clock.slept)) == 3  # jittered, not a fixed ladder


def test_a_call_that_keeps_failing_becomes_retryable_cloud_error(clock):
    calls = CloudCalls(
        RetryPolicy(attempts=3, base_s=1.0, cap_s=1.0), sleeper=clock.sleep, rng=random.Random(0)
    )

    def always():
        raise exceptions.TooManyRequests("quota exceeded for aiplatform.googleapis.com")

    with pytest.raises(RetryableCloudError, match="list jobs.*quota exceeded.*3 attempts"):
        calls.run("list jobs", always)
    assert len(clock.slept) == 2


def test_a_permanent_error_is_not_retried(clock):
    calls = CloudCalls(RetryPolicy(), sleeper=clock.sleep)
    n = []

    def invalid():
        n.append(1)
        raise exceptions.InvalidArgument("machine_spec: bad accelerator")

    with pytest.raises(exceptions.InvalidArgument):
        calls.run("create", invalid)
    assert len(n) == 1 and clock.slept == []


def test_a_refused_permission_names_permission_account_and_role_once(clock):
    from orchestrator.cloud_permissions import CloudPermissionDenied

    calls = CloudCalls(
        RetryPolicy(), sleeper=clock.sleep, expected_account="zs-orchestrator@p.iam.gserviceaccount.com"
    )
    n = []

    def denied():
        n.append(1)
        raise exceptions.PermissionDenied("Permission denied on resource (or it may not exist).")

    with pytest.raises(CloudPermissionDenied) as e:
        calls.run("look up IMAGE", denied, permission="artifactregistry.tags.get")
    assert len(n) == 1 and clock.slept == [] and e.value.exit_code == 2
    assert str(e.value).startswith(
        "permission denied: look up IMAGE: the application-default credentials lacks"
    )
    assert "artifactregistry.tags.get, which roles/artifactregistry.reader grants" in str(e.value)
    assert "run as zs-orchestrator@p.iam.gserviceaccount.com" in str(e.value)


@pytest.mark.parametrize(
    "error",
    [TimeoutError("suggest LRO still running"), auth_exceptions.TransportError("metadata server")],
    ids=["lro-timeout", "auth-transport"],
)
def test_an_lro_timeout_and_an_auth_transport_error_are_retried(clock, error):
    calls = CloudCalls(RetryPolicy(attempts=3, base_s=1.0, cap_s=1.0), sleeper=clock.sleep)
    errors = [error]

    def flaky():
        if errors:
            raise errors.pop()
        return "ok"

    assert calls.run("suggest 50 trials", flaky) == "ok" and len(clock.slept) == 1


def test_a_refresh_error_is_retried_only_when_google_says_so(clock):
    calls = CloudCalls(RetryPolicy(attempts=3, base_s=1.0, cap_s=1.0), sleeper=clock.sleep)
    errors = [auth_exceptions.RefreshError("temporarily unavailable", retryable=True)]

    def flaky():
        if errors:
            raise errors.pop()
        return "ok"

    assert calls.run("get trial", flaky) == "ok"

    def revoked():
        raise auth_exceptions.RefreshError("invalid_grant: token revoked", retryable=False)

    with pytest.raises(ConfigError, match="refused the credentials.*application-default login"):
        calls.run("get trial", revoked)


TEAM = (ROOT / "configs" / "teams" / "minibatch.yaml").read_text()


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (lambda t: t.replace("accelerator_count: 1", "accelerator_count: two"), "accelerator_count"),
        (
            lambda t: t.replace("machine_type: g2-standard-8", "machine_type: [g2, 8]"),
            "machine_type: Input should be",
        ),
        (lambda t: t + "accelerators: 2\n", "accelerators: unknown key"),
        (lambda t: t.replace("name: minibatch", "name: team3"), "name: Input should be"),
    ],
)
def test_a_bad_team_file_is_one_line_naming_file_line_and_key_exit_2(tmp_path, edit, where):
    """The Vertex settings read the team files with the schema the swarm settings use: a bad one is
    one line with the file, the key's line and the key, and bad input (exit 2), before any cloud call."""
    (tmp_path / "fullbatch.yaml").write_text((ROOT / "configs" / "teams" / "fullbatch.yaml").read_text())
    bad = edit(TEAM)
    (tmp_path / "minibatch.yaml").write_text(bad)
    with pytest.raises(ConfigError) as e:
        load_team_machines(tmp_path)
    line = str(e.value)
    assert "\n" not in line and e.value.exit_code == 2
    key = where.split(":")[0]
    at = next(i for i, text in enumerate(bad.splitlines(), start=1) if text.startswith(key))
    assert f"minibatch.yaml:{at}: {where}" in line, line


def test_a_team_file_without_a_machine_is_a_config_error(tmp_path):
    (tmp_path / "minibatch.yaml").write_text("name: minibatch\nmode: minibatch\n")
    with pytest.raises(ConfigError, match="minibatch.yaml.*machine_type"):
        load_team_machines(tmp_path)


def test_the_team_files_give_each_team_its_machine():
    machines = load_team_machines(ROOT / "configs" / "teams")
    assert machines == {
        "fullbatch": MachineSpec("a2-ultragpu-1g", "NVIDIA_A100_80GB", 1),
        "minibatch": MachineSpec("g2-standard-8", "NVIDIA_L4", 1),
    }


def test_the_cli_offers_exactly_the_teams_the_schema_knows():
    # commands/swarm.py repeats the names so that `orchestrator` starts without pydantic
    from orchestrator.commands import swarm
    from orchestrator.teams import TEAMS

    assert swarm.TEAMS == TEAMS
