"""orchestrator.infra_outputs: the recorded `terraform output -json` becomes InfraSettings, or one clear error."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from infra_stack import REPO
from orchestrator.errors import ConfigError
from orchestrator.infra_outputs import ENV_VAR, OVERRIDE_FLAGS, REQUIRED, InfraSettings, load_infra_outputs
from orchestrator.vertex_settings import load_vertex_settings

FIXTURE = REPO / "tests" / "fixtures" / "infra-outputs.json"


@pytest.fixture
def recorded() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.fixture(autouse=True)
def no_env_path(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def write(tmp_path, outputs) -> str:
    path = tmp_path / "infra-outputs.json"
    path.write_text(outputs if isinstance(outputs, str) else json.dumps(outputs))
    return str(path)


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_fixture_loads():
    settings = load_infra_outputs(str(FIXTURE), {})
    assert settings == InfraSettings(
        project_id="zeta-swarm-test",
        region="us-central1",
        data_bucket="zs-zeta-swarm-test-data",
        runs_bucket="zs-zeta-swarm-test-runs",
        staging_bucket="zs-zeta-swarm-test-staging",
        image_repository="us-central1-docker.pkg.dev/zeta-swarm-test/zs-images",
        trainer_service_account="zs-trainer@zeta-swarm-test.iam.gserviceaccount.com",
        orchestrator_service_account="zs-orchestrator@zeta-swarm-test.iam.gserviceaccount.com",
    )
    # The image the trials run: the repository output + vertex.yaml's image_package + the tag.
    vertex = load_vertex_settings(
        REPO / "configs" / "backends" / "vertex.yaml", settings, image_tag="3f2a9c1d0b4e"
    )
    assert vertex.image_tag_uri == "us-central1-docker.pkg.dev/zeta-swarm-test/zs-images/trainer:3f2a9c1d0b4e"
    with pytest.raises(AttributeError):
        settings.region = "europe-west4"  # frozen: a job spec cannot drift from what was loaded


def test_overrides_win_and_none_means_not_given():
    settings = load_infra_outputs(str(FIXTURE), {"runs_bucket": "other-runs", "region": None})
    assert settings.runs_bucket == "other-runs"
    assert settings.region == "us-central1"


def test_env_var_names_the_file(monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(FIXTURE))
    assert load_infra_outputs(None, {}).project_id == "zeta-swarm-test"


def test_argument_beats_env_var(monkeypatch, tmp_path, recorded):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "absent.json"))
    recorded["project_id"]["value"] = "explicit-project"
    assert load_infra_outputs(write(tmp_path, recorded), {}).project_id == "explicit-project"


def test_all_overrides_need_no_file(recorded):
    overrides = {name: recorded[name]["value"] for name in REQUIRED}
    assert load_infra_outputs(None, overrides).image_repository.endswith("/zs-images")


@pytest.mark.parametrize("name", REQUIRED)
def test_each_missing_setting_is_named(tmp_path, recorded, name):
    del recorded[name]
    path = write(tmp_path, recorded)
    with pytest.raises(ConfigError) as error:
        load_infra_outputs(path, {})
    message = one_line(error)
    assert path in message
    assert f"setting(s) {name}:" in message
    assert OVERRIDE_FLAGS[name] in message and "make infra-outputs" in message
    assert error.value.exit_code == 2


def test_empty_value_counts_as_missing(tmp_path, recorded):
    recorded["staging_bucket"]["value"] = ""
    recorded["region"]["value"] = None
    with pytest.raises(ConfigError) as error:
        load_infra_outputs(write(tmp_path, recorded), {})
    assert "setting(s) region, staging_bucket:" in one_line(error)


def test_no_file_and_no_env_says_how_to_supply(recorded):
    with pytest.raises(ConfigError) as error:
        load_infra_outputs(None, {"project_id": "zeta-swarm-test"})
    message = one_line(error)
    assert "--infra-outputs FILE" in message and ENV_VAR in message
    assert "project_id" not in message.split(":")[1]  # given by override, so not reported missing
    assert "--runs-bucket" in message


def test_unreadable_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as error:
        load_infra_outputs(str(missing), {})
    assert str(missing) in one_line(error) and "cannot be read" in str(error.value)


def test_malformed_json_names_line_and_column(tmp_path):
    path = write(tmp_path, '{\n  "region": {"value": "us-central1",}\n}')
    with pytest.raises(ConfigError) as error:
        load_infra_outputs(path, {})
    assert f"{path} is not valid JSON (line 2, column" in one_line(error)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('["us-central1"]', "not a JSON list"),
        ('{"region": "us-central1"}', "output 'region' must be an object with a \"value\" key"),
    ],
)
def test_wrong_shape_is_rejected(tmp_path, content, expected):
    with pytest.raises(ConfigError) as error:
        load_infra_outputs(write(tmp_path, content), {})
    assert expected in one_line(error)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("runs_bucket", "gs://zs-zeta-swarm-test-runs", "without gs://"),
        ("image_repository", "us-central1-docker.pkg.dev/p/r/trainer:abc", "without https:// or a tag"),
        ("image_repository", "https://us-central1-docker.pkg.dev/p/r", "without https:// or a tag"),
        ("trainer_service_account", "zs-trainer", "service account e-mail"),
        ("region", "us-central1-a", "region such as us-central1"),
        ("project_id", "Zeta Swarm", "project ID"),
    ],
)
def test_malformed_values_name_the_setting(tmp_path, recorded, name, value, expected):
    recorded[name]["value"] = value
    path = write(tmp_path, recorded)
    with pytest.raises(ConfigError) as error:
        load_infra_outputs(path, {})
    message = one_line(error)
    assert path in message and f"{name} = {value!r}" in message and expected in message


def test_bad_override_names_the_flag():
    with pytest.raises(ConfigError) as error:
        load_infra_outputs(str(FIXTURE), {"staging_bucket": "gs://x"})
    assert one_line(error).startswith("flag --staging-bucket: staging_bucket = 'gs://x'")


def test_non_string_value(tmp_path, recorded):
    recorded["region"]["value"] = ["us-central1"]
    with pytest.raises(ConfigError) as error:
        load_infra_outputs(write(tmp_path, recorded), {})
    assert 'region must be a string, got ["us-central1"]' in one_line(error)


def test_unknown_override_is_a_programming_error():
    with pytest.raises(ValueError, match="bucket_of_data"):
        load_infra_outputs(str(FIXTURE), {"bucket_of_data": "x"})


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.infra_outputs", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_module_prints_settings_and_single_outputs():
    checked = run_module(str(FIXTURE))
    assert checked.returncode == 0, checked.stderr
    assert "runs_bucket = zs-zeta-swarm-test-runs" in checked.stdout.splitlines()
    got = run_module(str(FIXTURE), "--get", "builder_service_account")
    assert got.stdout == "zs-builder@zeta-swarm-test.iam.gserviceaccount.com\n"
    quotas = run_module(str(FIXTURE), "--get", "quotas")
    assert json.loads(quotas.stdout)["l4"]["quota_id"] == "CustomModelTrainingL4GPUsPerProjectPerRegion"


def test_module_fails_with_one_line_and_exit_2(tmp_path):
    result = run_module(str(FIXTURE), "--get", "no_such_output")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "'no_such_output' is missing" in result.stderr
    bad = run_module(write(tmp_path, "{}"))
    assert (
        bad.returncode == 2 and bad.stdout == "" and "missing or empty setting(s) project_id," in bad.stderr
    )


def test_module_has_no_cloud_imports():
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            # Namespace-package .pth files preload `google` itself, so compare before and after.
            "import sys; before = set(sys.modules); import orchestrator.infra_outputs; "
            "print(sorted(m for m in set(sys.modules) - before if m.startswith(('google', 'torch', 'trainer'))))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip() == "[]", probe.stdout + probe.stderr
