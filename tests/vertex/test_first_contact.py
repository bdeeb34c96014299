"""First contact: the documented commands, as written, on a project where `make infra-apply` ran.

`make infra-outputs` (with a stand-in `terraform` that prints the recorded outputs) writes a fresh
outputs file; then the real `make swarm PHASE=2 BACKEND=vertex` runs the real `orchestrator` in a
subprocess against the strict fakes (tests/vertex/fake_cloud_site/sitecustomize.py): IAM from the
parsed Terraform grants, the region's granted L4 quota with 429 beyond it, the storage emulator for
the runs bucket. The cloud's state persists across the commands, so a second run dir and a
continued run are checked against what the first one left.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
from pathlib import Path

import pytest
from google.cloud import storage

from vertex.conftest import DIGEST
from vertex.test_settings import INFRA_JSON

ROOT = Path(__file__).resolve().parents[2]


def content_tag() -> str:
    from orchestrator.image_tag import content_tag as tag  # the tag `make image` pushes

    return tag()


SITE = Path(__file__).parent / "fake_cloud_site"
PROJECT = "zeta-swarm-test"
REPOSITORY = f"us-central1-docker.pkg.dev/{PROJECT}/zs-images"
TRIALS = 20  # > the 16 L4s granted in the recorded outputs, so the first batch meets the quota


def _make(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def fresh_outputs(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """`make infra-outputs` once, with a stand-in `terraform` printing the recorded outputs."""
    tmp = tmp_path_factory.mktemp("infra")
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    terraform = bin_dir / "terraform"
    terraform.write_text(
        f"#!/bin/sh\n# stands in for `terraform -chdir=infra output -json`\ncat {INFRA_JSON}\n"
    )
    terraform.chmod(0o755)
    outputs = tmp / "infra-outputs.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZETA_SWARM_")}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    made = _make("infra-outputs", f"INFRA_OUTPUTS={outputs}", env=env)
    assert made.returncode == 0 and f"wrote {outputs}" in made.stdout, made.stderr
    return outputs, env


@pytest.fixture
def first_contact(fresh_outputs, tmp_path, storage_emulator):
    """(run `make ARGS...`, the fresh outputs file, the cloud state after the last command)."""
    outputs, env = fresh_outputs
    env = env | {k: os.environ[k] for k in ("STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")}
    granted = json.loads(outputs.read_text())["quotas"]["value"]["l4"]["granted"]
    config = {
        "state": str(tmp_path / "cloud.pickle"),
        "infra": str(ROOT / "infra"),
        "gpu_quota": {"us-central1/NVIDIA_L4": int(granted)},
        "images": [[REPOSITORY, "trainer", content_tag(), DIGEST]],  # what `make image` pushed
    }
    runs = storage.Client(project=PROJECT).bucket("zs-zeta-swarm-test-runs")
    if not runs.exists():
        runs.create()

    def run(*args: str, **overrides) -> subprocess.CompletedProcess:
        path = tmp_path / "fake-cloud.json"
        path.write_text(json.dumps(config | overrides))
        pythonpath = os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")]))
        run_env = env | {"PYTHONPATH": pythonpath, "ZETA_SWARM_FAKE_CLOUD": str(path)}
        return _make(*args, f"INFRA_OUTPUTS={outputs}", env=run_env)

    def state() -> dict:
        return pickle.loads(Path(config["state"]).read_bytes())

    return run, outputs, state


def _jobs_of(state: dict, study: str) -> list:
    return [j for j in state["jobs.jobs"].values() if j.labels["study"] == study]


def test_make_swarm_on_vertex_from_fresh_outputs_then_a_second_run_that_shares_nothing(
    first_contact, tmp_path
):
    run, outputs, state = first_contact
    one, two = tmp_path / "run1", tmp_path / "run2"

    first = run("swarm", "PHASE=2", "BACKEND=vertex", f"RUN_DIR={one}", f"TRIALS={TRIALS}")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    run_id = json.loads((one / "run.json").read_text())["run_id"]
    study = f"phase2-minibatch-{run_id}"
    out = first.stdout.splitlines()
    # make echoes the command first (after `make data`'s line on a clone that had no data yet)
    command, *lines = out[
        next(i for i, line in enumerate(out) if line.startswith(".venv/bin/orchestrator")) :
    ]
    assert command.startswith(".venv/bin/orchestrator swarm --phase 2") and "--profile" not in command
    head = lines[:3]
    assert head == [
        "profile: cloud (the default for --backend vertex)",
        f"infra outputs: {outputs} (from --infra-outputs)",
        f"run id: {run_id}; cloud names: {study}",
    ]
    snap = json.loads((one / "trials.json").read_text())
    assert snap["run_id"] == run_id and len(snap["trials"]) == TRIALS
    assert {t["state"] for t in snap["trials"]} == {"COMPLETED"}
    assert all(
        t["output_dir"].startswith(f"gs://zs-zeta-swarm-test-runs/{study}/trials/") for t in snap["trials"]
    )
    cloud = state()
    (vizier_study,) = cloud["studies"].values()
    assert vizier_study.proto.display_name == study and len(vizier_study.trials) == TRIALS
    jobs = _jobs_of(cloud, study)
    assert len(jobs) == TRIALS and all(j.display_name.startswith(f"{study}-t") for j in jobs)
    assert {j.job_spec.worker_pool_specs[0].machine_spec.machine_type for j in jobs} == {"g2-standard-8"}
    # 16 L4s granted: the rest of the first batch (50 on the cloud profile) met 429 and waited in
    # Vizier, untouched, for a later pass.
    assert cloud["calls"]["create_custom_job"] > TRIALS

    second = run("swarm", "PHASE=2", "BACKEND=vertex", f"RUN_DIR={two}", "TRIALS=4", "PARALLEL=2")
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    other = "phase2-minibatch-" + json.loads((two / "run.json").read_text())["run_id"]
    assert other != study
    cloud = state()
    studies = {s.proto.display_name: s for s in cloud["studies"].values()}
    assert set(studies) == {study, other} and len(studies[other].trials) == 4  # counts this run only
    assert len(_jobs_of(cloud, other)) == 4 and len(_jobs_of(cloud, study)) == TRIALS
    dirs_one = {j.job_spec.base_output_directory.output_uri_prefix for j in _jobs_of(cloud, study)}
    dirs_two = {j.job_spec.base_output_directory.output_uri_prefix for j in _jobs_of(cloud, other)}
    assert not dirs_one & dirs_two and all(f"/{other}/" in d for d in dirs_two)

    again = run("swarm", "PHASE=2", "BACKEND=vertex", f"RUN_DIR={one}", f"TRIALS={TRIALS}")  # run 1 again
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"run id: {run_id};" in again.stdout and "round complete" in again.stdout
    cloud = state()
    assert len(cloud["studies"]) == 2 and len(_jobs_of(cloud, study)) == TRIALS  # it found its own


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("orchestrator: error:")]
    return line


def test_an_image_not_built_stops_the_swarm_before_the_tuner_suggests_anything(first_contact, tmp_path):
    run, _, state = first_contact
    line = _one_error_line(run("swarm", "PHASE=2", "BACKEND=vertex", f"RUN_DIR={tmp_path / 'r'}", images=[]))
    assert f"trainer:{content_tag()} not found in Artifact Registry" in line and "make image" in line
    assert not state()["studies"] and "suggest_trials" not in state()["calls"]


def test_without_the_repository_grant_the_swarm_names_permission_account_and_role(first_contact, tmp_path):
    run, _, state = first_contact
    proc = run(
        "swarm",
        "PHASE=2",
        "BACKEND=vertex",
        f"RUN_DIR={tmp_path / 'r'}",
        revoke=["roles/artifactregistry.reader"],
    )
    line = _one_error_line(proc)
    assert "artifactregistry.tags.get" in line and "roles/artifactregistry.reader" in line
    assert f"zs-orchestrator@{PROJECT}.iam.gserviceaccount.com" in line
    assert "suggest_trials" not in state()["calls"]
