"""`orchestrator zeros --backend vertex` minus the cloud: one CustomJob per shard on the fakes, the
job's `trainer zeros generate` run for real against the storage emulator when the fake job
succeeds; a preempted shard is retried, and a controller killed right after a create never
creates that job again."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from click.testing import CliRunner
from orchestrator.runners.vertex import VertexRunner
from orchestrator.vertex_settings import MachineSpec
from orchestrator.zeros import ZerosRun, ZerosSettings
from trainer.cli import main as trainer_main
from trainer.data.dataset import merge_shards

from vertex.fakes import JS, Crash, FakeJobService, Outcome


def test_shards_as_custom_jobs_through_a_preemption_and_a_crash(
    mocker, tmp_path, cloud, clock, calls, credentials, storage_emulator, settings, registry
):
    out = f"gs://zeta-swarm-test-data/{uuid.uuid4().hex}/zeros"
    vs = replace(settings, machines={**settings.machines, "zeros-cpu": MachineSpec("n2-highcpu-16")})
    played: list[str] = []

    def play_trainer(job):  # the container's command, for real, against the emulator
        args = list(job.job_spec.worker_pool_specs[0].container_spec.args)
        result = CliRunner().invoke(trainer_main, args)
        assert result.exit_code == 0, result.output
        played.append(job.labels["trial"])

    def outcome(job):
        if (job.labels["trial"], job.labels["attempt"]) == ("00001", "1"):
            return Outcome(run_s=100, final=JS.JOB_STATE_FAILED, error="Preempted: the VM was reclaimed")
        return Outcome(run_s=100)

    jobs = FakeJobService(cloud, outcome=outcome, on_success=play_trainer).install(mocker)
    s = ZerosSettings(
        start=20_001, count=600, shards=3, table=False, out=out, run_dir=str(tmp_path / "run"), parallel=2
    )

    def run() -> ZerosRun:
        runner = VertexRunner(vs, s.study(), credentials=credentials, calls=calls)
        return ZerosRun(
            s, runner, ["trainer"], out=lambda _line: None, clock=clock, sleep=clock.sleep, poll_s=30
        )

    # Calls: list the study's jobs, pin the image (tag, then image), then shard 0's label lookup and its create:
    # the controller dies right after the service took the create, before it heard back.
    cloud.crash_at(5, after=True)
    with pytest.raises(Crash):
        run().generate()
    assert [name for name, _ in cloud.log] == [
        "list_custom_jobs",
        "get_tag",
        "get_docker_image",
        "list_custom_jobs",
        "create_custom_job",
    ]
    assert [j.labels["trial"] for j in jobs.jobs.values()] == ["00000"]
    cloud.crash_at(None)

    counts = run().generate()
    assert counts["adopted"] == 1 and counts["launched"] == 3  # shard 1 twice: preempted, then retried
    created = sorted((j.labels["trial"], j.labels["attempt"]) for j in jobs.jobs.values())
    assert created == [("00000", "1"), ("00001", "1"), ("00001", "2"), ("00002", "1")]
    assert sorted(played) == ["00000", "00001", "00002"]  # every shard computed once
    (pool,) = jobs.by_labels(trial="00002")[0].job_spec.worker_pool_specs
    assert pool.machine_spec.machine_type == "n2-highcpu-16"
    assert list(pool.container_spec.args)[:3] == ["zeros", "generate", "--start"]

    manifest = merge_shards(out, expect=[(j.first_index, j.count) for j in s.plan()])
    assert manifest["boundaries_certified"] and [b["index"] for b in manifest["boundaries"]] == [
        20_201,
        20_401,
    ]


def test_the_dataset_command_can_write_the_data_bucket():
    """`orchestrator zeros --backend vertex --out gs://<data_bucket>/...` (docs/infra.md step 4): each
    shard's job runs as the trainer and writes its .npy and record there (a retried job overwrites
    its own); the orchestrator's account reads the records, and the merge writes manifest.json
    (again on a rerun). Trials only read the data bucket, but it is one bucket."""
    from pathlib import Path

    from vertex.fakes import FakeIam

    infra = Path(__file__).resolve().parents[2] / "infra"
    for account, needs in {
        "trainer": ("get", "list", "create", "delete"),
        "orchestrator": ("get", "list", "create", "delete"),
    }.items():
        iam = FakeIam.from_terraform(infra, "zeta-swarm-test", caller=account)
        missing = [v for v in needs if not iam.allowed(f"storage.objects.{v}", [("bucket", "data")])]
        assert missing == [], f"{account} lacks storage.objects.{missing} on the data bucket"
    # the image builder has nothing to do with datasets and gets nothing there
    builder = FakeIam.from_terraform(infra, "zeta-swarm-test", caller="builder")
    assert not builder.allowed("storage.objects.create", [("bucket", "data")])
