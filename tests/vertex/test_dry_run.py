"""`orchestrator swarm --backend vertex --dry-run [--json]`: the study and the first round's CustomJob
requests, offline; and the Vertex modules keep the cloud SDKs out of `import`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner
from google.cloud import aiplatform_v1
from orchestrator.cli import main

from vertex.test_settings import INFRA_JSON

ARGS = [
    "swarm",
    "--phase",
    "2",
    "--backend",
    "vertex",
    "--profile",
    "smoke",
    "--parallel",
    "3",
    "--max-trials",
    "5",
]


@pytest.fixture
def offline(monkeypatch, cloud, vizier, job_service, mocker):
    """Fail any socket connect (metadata server, ADC, REST) and count gapic calls on the fakes."""
    from vertex.fakes import FakeArtifactRegistry

    FakeArtifactRegistry(cloud).install(mocker)

    def refuse(self, address):
        raise AssertionError(f"dry run opened a connection to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return cloud


def cloud_study(run_dir) -> str:
    """The run's cloud name, from the id the dry run recorded in the run dir."""
    return "phase2-minibatch-" + json.loads((run_dir / "run.json").read_text())["run_id"]


def test_json_dry_run_prints_the_study_spec_and_parsable_custom_jobs(offline, tmp_path, monkeypatch):
    monkeypatch.setenv("ZETA_SWARM_INFRA_OUTPUTS", str(INFRA_JSON))  # the flag's environment twin
    result = CliRunner().invoke(main, [*ARGS, "--run-dir", str(tmp_path / "run"), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert offline.total_calls == 0
    study = cloud_study(tmp_path / "run")
    spec = aiplatform_v1.StudySpec.from_json(json.dumps(plan["study"]))
    assert [p.parameter_id for p in spec.parameters] == ["loss.gue_nll_weight", "loss.gue_mmd_weight"]
    assert spec.metrics[0].goal == aiplatform_v1.StudySpec.MetricSpec.GoalType.MINIMIZE
    assert len(plan["jobs"]) == 3
    for i, raw in enumerate(plan["jobs"], start=1):
        job = aiplatform_v1.CustomJob.from_json(json.dumps(raw))
        pool = job.job_spec.worker_pool_specs[0]
        assert pool.machine_spec.machine_type == "g2-standard-8"
        assert pool.machine_spec.accelerator_type == aiplatform_v1.AcceleratorType.NVIDIA_L4
        assert job.job_spec.service_account == "zs-trainer@zeta-swarm-test.iam.gserviceaccount.com"
        out = f"gs://zs-zeta-swarm-test-runs/{study}/trials/{i}"
        assert job.job_spec.base_output_directory.output_uri_prefix == out
        assert list(pool.container_spec.args)[-2:] == ["--output-dir", out]
        assert job.labels["trial"] == str(i) and job.labels["study"] == study
        assert job.display_name == f"{study}-t{i}-a1"
        assert pool.container_spec.image_uri.startswith(
            "us-central1-docker.pkg.dev/zeta-swarm-test/zs-images/trainer:"
        )
    assert any("sha256 digest" in n for n in plan["notes"])


def test_text_dry_run_shows_the_study_and_one_line_per_job(offline, tmp_path):
    result = CliRunner().invoke(
        main, [*ARGS, "--run-dir", str(tmp_path / "run"), "--infra-outputs", str(INFRA_JSON), "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    study = cloud_study(tmp_path / "run")
    assert f"Vizier study {study}: ALGORITHM_UNSPECIFIED, MINIMIZE extrapolation_error" in result.output
    assert "loss.gue_nll_weight [0.001, 1.0] UNIT_LOG_SCALE" in result.output
    assert result.output.count("g2-standard-8 + 1 x NVIDIA_L4, us-central1-docker.pkg.dev") == 3
    # A cloud trial runs on the team's machine: the banner and the cost estimate name it.
    assert "team minibatch (g2-standard-8 + 1 x NVIDIA_L4), backend vertex" in result.output
    assert " USD on g2-standard-8 + 1 x NVIDIA_L4 (cap " in result.output
    assert "dry run: nothing was launched" in result.output
    assert offline.total_calls == 0


def test_json_needs_a_vertex_dry_run(tmp_path):
    result = CliRunner().invoke(
        main, [*ARGS, "--run-dir", str(tmp_path), "--infra-outputs", str(INFRA_JSON), "--json"]
    )
    assert result.exit_code == 2 and "--json goes with --dry-run --backend vertex" in result.output


def test_a_missing_infra_setting_is_one_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.delenv("ZETA_SWARM_INFRA_OUTPUTS", raising=False)
    bad = tmp_path / "outputs.json"
    bad.write_text(
        json.dumps({k: v for k, v in json.loads(INFRA_JSON.read_text()).items() if k != "runs_bucket"})
    )
    result = CliRunner().invoke(
        main, [*ARGS, "--run-dir", str(tmp_path / "r"), "--infra-outputs", str(bad), "--dry-run"]
    )
    assert result.exit_code == 2
    assert "runs_bucket" in result.output and len(result.output.strip().splitlines()) == 1


def test_the_vertex_modules_import_no_cloud_sdk():
    code = (
        "import sys, orchestrator.runners.vertex, orchestrator.tuners.vizier, orchestrator.vertex_settings, "
        "orchestrator.vertex_experiments, orchestrator.image_tag, "
        "orchestrator.vertex_plan\n"
        # bare `google.cloud` is a namespace package a .pth file creates at interpreter start
        "loaded = [m for m in sys.modules if m.startswith(('google.cloud.', 'vizier', 'grpc'))]\n"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_single_infra_flags_override_the_outputs_file(offline, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            *ARGS,
            *("--run-dir", str(tmp_path / "run"), "--infra-outputs", str(INFRA_JSON)),
            *("--runs-bucket", "other-runs", "--data-bucket", "other-data", "--dry-run", "--json"),
        ],
    )
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)["jobs"][0]
    assert (
        job["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"]
        == f"gs://other-runs/{cloud_study(tmp_path / 'run')}/trials/1"
    )
    assert (
        "data.path=gs://other-data/odlyzko" in job["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"]
    )


def test_flags_alone_are_enough_and_a_missing_one_is_named_in_one_line(offline, tmp_path, monkeypatch):
    monkeypatch.delenv("ZETA_SWARM_INFRA_OUTPUTS", raising=False)
    values = {k: v["value"] for k, v in json.loads(INFRA_JSON.read_text()).items()}
    from orchestrator.infra_outputs import OVERRIDE_FLAGS

    flags = [x for name, flag in OVERRIDE_FLAGS.items() for x in (flag, values[name])]
    result = CliRunner().invoke(main, [*ARGS, "--run-dir", str(tmp_path / "ok"), *flags, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "dry run: nothing was launched" in result.output

    without = flags[: flags.index("--runs-bucket")] + flags[flags.index("--runs-bucket") + 2 :]
    result = CliRunner().invoke(main, [*ARGS, "--run-dir", str(tmp_path / "r"), *without, "--dry-run"])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "--runs-bucket" in result.output
    assert not (tmp_path / "r").exists()


def test_compare_passes_its_infra_flags_to_every_arm(mocker, tmp_path):
    run = mocker.patch("orchestrator.compare.run_compare", return_value=tmp_path / "report")
    result = CliRunner().invoke(
        main,
        [
            "compare",
            "--backend",
            "vertex",
            "--profile",
            "smoke",
            "--run-dir",
            str(tmp_path),
            "--region",
            "europe-west4",
        ],
    )
    assert result.exit_code == 0, result.output
    overrides = run.call_args.kwargs["infra_overrides"]
    assert overrides["region"] == "europe-west4" and overrides["runs_bucket"] is None


def test_vertex_defaults_to_the_cloud_profile_and_says_so(offline, tmp_path):
    args = ["swarm", "--phase", "2", "--backend", "vertex", "--run-dir", str(tmp_path / "run")]
    result = CliRunner().invoke(main, [*args, "--infra-outputs", str(INFRA_JSON), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    assert "profile: cloud (the default for --backend vertex)" in result.stderr
    plan = json.loads(result.stdout)
    assert len(plan["jobs"]) == 50  # phase 2's parallel on GPUs
    sets = plan["jobs"][0]["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"]
    # Team 2 trains on 1e7 real zeros beyond the table, from the sharded 1e8 dataset in the data bucket.
    assert "data.path=gs://zs-zeta-swarm-test-data/zeros-1e8" in sets
    assert "data.train_start=2001053" in sets and "data.train_count=10000000" in sets
    assert "train.num_clusters=10000" in sets and "train.clusters_per_step=50" in sets
    assert "--config" in sets and sets[sets.index("--config") + 1] == "configs/trainer/minibatch.yaml"

    text = CliRunner().invoke(main, [*args, "--infra-outputs", str(INFRA_JSON), "--dry-run"])
    assert text.exit_code == 0 and "profile: cloud (the default for --backend vertex)" in text.stdout


def test_the_local_backend_keeps_the_default_profile(tmp_path, odlyzko_prefix, monkeypatch):
    # The dry run checks the dataset covers the profile's windows; a fresh clone has no data/.
    monkeypatch.setenv("ZETA_SWARM_DATA", str(odlyzko_prefix(200_000)))
    result = CliRunner().invoke(
        main, ["swarm", "--phase", "2", "--run-dir", str(tmp_path / "run"), "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "profile: default (the default for --backend local)" in result.stdout
    assert "data.train_count=8000" in result.stdout


def test_the_banner_names_vizier_as_the_vertex_tuner(tmp_path):
    from orchestrator.phases import SwarmRun
    from orchestrator.settings_loader import load_settings

    def round_line(backend: str) -> str:
        s = load_settings(
            2, backend=backend, profile="smoke", run_dir=tmp_path, infra_outputs=str(INFRA_JSON)
        )
        return next(line for line in SwarmRun(s).describe() if line.startswith("round weights"))

    assert "Vertex AI Vizier, ALGORITHM_UNSPECIFIED" in round_line("vertex")
    assert "TPE" not in round_line("vertex")
    assert "Optuna TPE, constant liar" in round_line("local")


def test_experiments_need_the_infra_tensorboard_and_say_so_in_one_line(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            *ARGS,
            "--run-dir",
            str(tmp_path / "r"),
            "--infra-outputs",
            str(INFRA_JSON),
            "--experiments",
            "--dry-run",
        ],
    )
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert (
        "--experiments needs a Vertex AI TensorBoard" in result.output
        and "tensorboard = true" in result.output
    )
    local = CliRunner().invoke(
        main, ["swarm", "--phase", "2", "--run-dir", str(tmp_path / "l"), "--experiments"]
    )
    assert local.exit_code == 2 and "Vertex AI Experiments needs --backend vertex" in local.output


@pytest.mark.parametrize(
    ("phase", "team"), [(1, "fullbatch"), (1, "minibatch"), (2, "minibatch"), (2, "fullbatch")]
)
def test_cloud_profile_trials_fit_the_1e8_dataset(offline, tmp_path, phase, team):
    """Every cloud trial's config passes the trainer's own schema, and its val, tune and test
    windows fit the first 1e8 zeros: Team 1 inside the Odlyzko table, Team 2 beyond it."""
    from trainer.config import load_config

    args = ["swarm", "--phase", str(phase), "--backend", "vertex", "--team", team]
    result = CliRunner().invoke(
        main,
        [
            *args,
            "--run-dir",
            str(tmp_path / "run"),
            "--infra-outputs",
            str(INFRA_JSON),
            "--dry-run",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    table_last, dataset_last = 2_001_052, 100_000_000
    jobs = json.loads(result.stdout)["jobs"]
    assert jobs
    for job in jobs:
        argv = job["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"]
        # a dry run shows a tuned knob as `key=<key>`: Vizier picks it later, inside its space
        sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set" and not argv[i + 1].endswith(">")]
        cfg = load_config(argv[argv.index("--config") + 1], sets)
        assert cfg.data.path == "gs://zs-zeta-swarm-test-data/zeros-1e8"
        windows = cfg.window_sets(dataset_last)  # raises when the test windows do not fit
        last_read = max(windows["test"]) + cfg.data.horizon
        if cfg.train.mode == "fullbatch":
            assert last_read <= table_last
        else:
            assert cfg.data.train_start > table_last and cfg.data.train_count >= 10_000_000
            assert cfg.train.num_clusters // cfg.train.clusters_per_step == 200
            assert last_read <= dataset_last
