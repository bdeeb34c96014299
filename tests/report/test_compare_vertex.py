"""`make compare BACKEND=vertex` minus the cloud: each arm's study runs on the Vertex fakes (JobService,
Artifact Registry under the real SDK) with a fake clock, outputs go to the runs bucket on the storage
emulator, and the report reads them back from gs:// (the shared fakes of tests/vertex)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from orchestrator.compare import arm_settings, load_design, run_compare
from vertex.conftest import credentials  # noqa: F401  (fixture)
from vertex.test_controller_on_vertex import World, objective
from vertex.test_settings import INFRA_JSON

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "experiments" / "compare.yaml"
_spec = importlib.util.spec_from_file_location(
    "fake_trainer", Path(__file__).resolve().parents[1] / "orchestrator" / "fake_trainer.py"
)
fake_trainer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake_trainer)


class ContractWorld(World):
    """The Vertex fakes, whose jobs write final.json as the trainer does (docs/contracts.md: three
    window sets, five baselines, every window's error), as the fake local trainer does."""

    def _trainer_writes_final(self, job):
        args = list(job.job_spec.worker_pool_specs[0].container_spec.args)
        sets = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith("--"))
        final = fake_trainer.final_json(sets, objective(args), epochs_done=2, seconds=300.0)
        out = job.job_spec.base_output_directory.output_uri_prefix
        self.bucket.blob(out.split("/", 3)[3] + "/final.json").upload_from_string(json.dumps(final))


def test_compare_on_vertex_fakes(mocker, tmp_path, credentials, storage_emulator):  # noqa: F811
    design = load_design(CONFIG, "smoke", "vertex")
    first = arm_settings(design, design.arms[0], tmp_path / "cmp", infra_outputs=str(INFRA_JSON))
    world = ContractWorld(mocker, tmp_path / "world", credentials, {("1", 1)}, first, emulator=True)
    lines: list[str] = []
    report = run_compare(
        design,
        tmp_path / "cmp",
        progress=lines.append,
        infra_outputs=str(INFRA_JSON),
        clock=world.clock,
        sleep=world.clock.sleep,
    )
    for arm in design.arms:
        snap = json.loads((tmp_path / "cmp" / arm.name / "trials.json").read_text())
        assert snap["backend"] == "vertex"
        assert [t["state"] for t in snap["trials"]] == ["COMPLETED"] * len(design.seeds)
        # Every cloud name carries the arm's run id (RUN_DIR/<arm>/run.json).
        assert snap["cloud_study"] == f"compare-{arm.name}-{snap['run_id']}" and snap["run_id"]
        assert all(
            t["output_dir"].startswith(f"gs://zs-zeta-swarm-test-runs/{snap['cloud_study']}/")
            for t in snap["trials"]
        )
        machine = "a2-ultragpu-1g" if arm.team == "fullbatch" else "g2-standard-8"
        assert all(t["machine"].startswith(machine) for t in snap["trials"])
    # The first trial of each arm was preempted once and resumed; every job carried its arm's budget.
    assert sum("retry      attempt 2: Preempted" in line for line in lines) == len(design.arms)
    for job in world.jobs.jobs.values():
        args = list(job.job_spec.worker_pool_specs[0].container_spec.args)
        arm = next(a for a in design.arms if job.labels["study"].startswith(f"compare-{a.name}-"))
        for key in ("loss.rg_penalty_weight", "train.epochs", "data.train_count"):
            assert f"{key}={arm.overrides[key]}" in args, (arm.name, key)
    md = (report / "summary.md").read_text()
    # Judged on the test windows read back from gs://, seeds averaged per window, then paired.
    assert "**Verdict.** " in md and "paired over 16 test windows" in md, md
    # The stand-in's error ignores rg_penalty and the seeds' windows agree: no difference at all.
    assert "**Verdict.** Scenario A: rg_penalty adds nothing measurable; the difference +0 (paired" in md
    assert "| smoothed_ar 0.01" in md and "3 of 3 arms beat the best baseline on the test windows" in md
    # The fake trainer writes final.json only; the report says what else is missing, read from gs://.
    assert "missing metrics.jsonl, predictions.json, config.yaml" in md
