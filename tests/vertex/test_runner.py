"""The CustomJob runner: the requests it sends (from the recorded Terraform outputs), launch
idempotency under errors, and what jobs() costs."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from google.api_core import exceptions
from google.cloud import aiplatform_v1
from orchestrator.errors import PermanentJobError, RetryableCloudError
from orchestrator.infra_outputs import load_infra_outputs
from orchestrator.runners.base import JobSpec, JobState
from orchestrator.runners.vertex import VertexRunner, api_dict, label_value, map_state, read_output
from orchestrator.vertex_settings import load_vertex_settings

from vertex.conftest import DIGEST
from vertex.fakes import JS, FakeArtifactRegistry, Outcome
from vertex.test_settings import INFRA_JSON, VERTEX_YAML

STUDY = "phase2-minibatch"


@pytest.fixture
def recorded(mocker, cloud, credentials):
    """Settings from the recorded terraform outputs, with the trainer image pushed to that registry."""
    settings = load_vertex_settings(VERTEX_YAML, load_infra_outputs(str(INFRA_JSON), {}))
    FakeArtifactRegistry(cloud).install(mocker).push(
        settings.image_repository, "trainer", settings.image_tag, DIGEST
    )
    return settings


def spec(settings, trial="3", attempt=1, team="minibatch", study=STUDY, **kw) -> JobSpec:
    out = settings.trial_dir(study, trial)
    args = (
        "train",
        "--config",
        "configs/trainer/minibatch.yaml",
        "--set",
        "loss.gue_nll_weight=0.031",
        "--output-dir",
        out,
    )
    return JobSpec(study, trial, attempt, 2, team, args, out, **kw)


@pytest.mark.parametrize(
    ("team", "machine", "accelerator"),
    [("fullbatch", "a2-ultragpu-1g", "NVIDIA_A100_80GB"), ("minibatch", "g2-standard-8", "NVIDIA_L4")],
)
def test_the_terraform_outputs_flow_into_the_create_request(
    recorded, job_service, cloud, calls, credentials, team, machine, accelerator
):
    runner = VertexRunner(recorded, STUDY, credentials=credentials, calls=calls)
    s = spec(recorded, team=team, labels={"profile": "Default Profile"})
    job = runner.launch(s)
    (req,) = cloud.requests("create_custom_job")
    assert req.parent == "projects/zeta-swarm-test/locations/us-central1"
    cj = req.custom_job
    (pool,) = cj.job_spec.worker_pool_specs
    assert pool.machine_spec.machine_type == machine
    assert pool.machine_spec.accelerator_type == aiplatform_v1.AcceleratorType[accelerator]
    assert pool.machine_spec.accelerator_count == 1 and pool.replica_count == 1
    assert (
        pool.container_spec.image_uri
        == f"us-central1-docker.pkg.dev/zeta-swarm-test/zs-images/trainer@{DIGEST}"
    )
    assert list(pool.container_spec.command) == ["trainer"]
    assert list(pool.container_spec.args) == list(s.trainer_args)
    assert cj.job_spec.service_account == "zs-trainer@zeta-swarm-test.iam.gserviceaccount.com"
    trial_dir = "gs://zs-zeta-swarm-test-runs/phase2-minibatch/trials/3"
    assert (
        cj.job_spec.base_output_directory.output_uri_prefix == trial_dir
    )  # AIP_TENSORBOARD_LOG_DIR lands under it
    assert pool.container_spec.args[-1] == trial_dir
    assert dict(cj.labels) == {
        "study": "phase2-minibatch",
        "trial": "3",
        "attempt": "1",
        "phase": "2",
        "team": team,
        "profile": "default-profile",
    }
    assert cj.job_spec.scheduling.restart_job_on_worker_restart is True
    assert cj.job_spec.scheduling.timeout.total_seconds() == 86400
    assert cj.job_spec.scheduling.strategy == aiplatform_v1.Scheduling.Strategy.STRATEGY_UNSPECIFIED
    assert job.machine == f"{machine} + 1 x {accelerator}"
    assert (
        job.detail
        == f"https://console.cloud.google.com/vertex-ai/locations/us-central1/training/{job.job_id.rsplit('/', 1)[1]}?project=zeta-swarm-test"
    )


def test_spot_and_max_wait_reach_the_scheduling(recorded, job_service, cloud, calls, credentials):
    runner = VertexRunner(
        replace(recorded, spot=True, max_wait_s=3600), STUDY, credentials=credentials, calls=calls
    )
    runner.launch(spec(recorded))
    sched = cloud.requests("create_custom_job")[0].custom_job.job_spec.scheduling
    assert sched.strategy == aiplatform_v1.Scheduling.Strategy.SPOT
    assert sched.max_wait_duration.total_seconds() == 3600


def test_the_dry_run_request_is_exactly_what_launch_sends_and_parses_back(
    recorded, job_service, cloud, calls, credentials
):
    runner = VertexRunner(replace(recorded, spot=True), STUDY, credentials=credentials, calls=calls)
    s = spec(recorded)
    planned = runner.job_request(s)
    runner.launch(s)
    assert cloud.requests("create_custom_job")[0].custom_job == planned
    text = json.dumps(api_dict(planned))
    assert '"workerPoolSpecs"' in text and '"baseOutputDirectory"' in text  # the v1 JSON names
    assert aiplatform_v1.CustomJob.from_json(text) == planned
    assert json.loads(text)["jobSpec"]["scheduling"]["strategy"] == "SPOT"


def test_launch_retries_quota_errors_and_never_creates_twice(
    recorded, job_service, cloud, calls, credentials, clock
):
    runner = VertexRunner(recorded, STUDY, credentials=credentials, calls=calls)
    cloud.fail("create_custom_job", exceptions.TooManyRequests("429 rate"), times=2)
    # then a create that goes through although its caller sees a 503 (lost response)
    cloud.fail("create_custom_job", exceptions.ServiceUnavailable("503"), after=True)
    job = runner.launch(spec(recorded))
    assert len(job_service.jobs) == 1 and job.job_id in job_service.jobs
    assert cloud.calls["create_custom_job"] == 3  # the 4th attempt found the job by its labels
    assert len(clock.slept) == 3


def test_a_refused_job_is_a_permanent_error(recorded, job_service, cloud, calls, credentials):
    runner = VertexRunner(recorded, STUDY, credentials=credentials, calls=calls)
    cloud.fail("create_custom_job", exceptions.InvalidArgument("machine_spec: unsupported accelerator"))
    with pytest.raises(PermanentJobError, match="trial 3 attempt 1.*unsupported accelerator"):
        runner.launch(spec(recorded))
    with pytest.raises(PermanentJobError, match="not a gs:// URL"):
        runner.launch(replace(spec(recorded), output_dir="runs/phase2/trials/3"))


def test_labels_are_made_label_safe():
    assert label_value("Phase 2/Team.B") == "phase-2-team-b"
    assert len(label_value("x" * 100)) == 63


def test_every_vertex_state_maps_by_enum_not_by_str():
    expected = {
        JS.JOB_STATE_QUEUED: JobState.QUEUED,
        JS.JOB_STATE_PENDING: JobState.QUEUED,
        JS.JOB_STATE_RUNNING: JobState.RUNNING,
        JS.JOB_STATE_SUCCEEDED: JobState.SUCCEEDED,
        JS.JOB_STATE_FAILED: JobState.FAILED,
        JS.JOB_STATE_EXPIRED: JobState.FAILED,
        JS.JOB_STATE_CANCELLING: JobState.RUNNING,
        JS.JOB_STATE_CANCELLED: JobState.CANCELLED,
    }
    for vertex_state, ours in expected.items():
        assert map_state(vertex_state) is ours
    assert {map_state(s) for s in JS} <= set(JobState)  # every state the API may return has a mapping


def test_jobs_calls_do_not_grow_with_finished_jobs(recorded, job_service, cloud, calls, credentials, clock):
    job_service.outcome = lambda job: Outcome(run_s=100 if int(job.labels["trial"]) <= 300 else 10**9)
    runner = VertexRunner(recorded, STUDY, credentials=credentials, calls=calls)
    for t in range(1, 311):
        runner.launch(spec(recorded, trial=str(t)))
    clock.advance(1000)  # 300 finished, 10 running
    fresh = VertexRunner(recorded, STUDY, credentials=credentials, calls=calls)
    before = cloud.total_calls
    jobs = fresh.jobs()
    first_pass = cloud.total_calls - before
    assert len(jobs) == 310 and first_pass == 4  # all pages once (page size 100)
    assert sum(j.state is JobState.SUCCEEDED for j in jobs) == 300
    before = cloud.total_calls
    jobs = fresh.jobs()
    assert cloud.total_calls - before == 1  # only the unfinished, one page
    (req,) = cloud.requests("list_custom_jobs")[-1:]
    assert 'labels.study="phase2-minibatch"' in req.filter and 'state!="JOB_STATE_SUCCEEDED"' in req.filter
    fresh.cancel(jobs[-1].job_id)
    clock.advance(60)
    before = cloud.total_calls
    jobs = fresh.jobs()
    assert cloud.total_calls - before == 2  # the list plus one get for the job that ended
    assert jobs[-1].state is JobState.CANCELLED and len(jobs) == 310


def test_a_failed_job_carries_the_error_and_the_console_link(
    recorded, job_service, cloud, calls, credentials, clock
):
    job_service.outcome = lambda job: Outcome(
        run_s=50, final=JS.JOB_STATE_FAILED, error="Preempted: the Spot VM was reclaimed"
    )
    runner = VertexRunner(recorded, STUDY, credentials=credentials, calls=calls)
    job = runner.launch(spec(recorded))
    clock.advance(500)
    (done,) = runner.jobs()
    assert done.state is JobState.FAILED and done.job_id == job.job_id
    assert done.detail.startswith(
        "Preempted: the Spot VM was reclaimed (https://console.cloud.google.com/vertex-ai/"
    )


# Vertex's documented messages of a container's non-zero exit (module docstring of runners.vertex).
EXITED = "The replica workerpool0-0 exited with a non-zero status of {}. Termination reason: Error."
OOM = "The replica workerpool0-0 ran out of memory and exited with a non-zero status of 137."


@pytest.mark.parametrize(
    ("final", "error", "code"),
    [
        (JS.JOB_STATE_FAILED, EXITED.format(2), 2),  # the trainer refused its input
        (JS.JOB_STATE_FAILED, EXITED.format(75), 75),  # disk full, permission: the environment
        (JS.JOB_STATE_FAILED, OOM, 137),
        (JS.JOB_STATE_FAILED, "Preempted: the Spot VM was reclaimed", None),
        (JS.JOB_STATE_FAILED, "Resources are insufficient in region: us-central1.", None),
        (JS.JOB_STATE_SUCCEEDED, "", 0),
    ],
)
def test_the_trainers_exit_code_is_read_from_the_finished_job(
    recorded, job_service, calls, credentials, clock, final, error, code
):
    job_service.outcome = lambda job: Outcome(run_s=50, final=final, error=error)
    runner = VertexRunner(recorded, STUDY, credentials=credentials, calls=calls)
    runner.launch(spec(recorded))
    (running,) = runner.jobs()
    assert running.exit_code is None  # not finished: no exit code yet
    clock.advance(500)
    (done,) = runner.jobs()
    assert done.exit_code == code
    # and a fresh controller (a restart) reads the same code from the first listing
    (again,) = VertexRunner(recorded, STUDY, credentials=credentials, calls=calls).jobs()
    assert again.exit_code == code


def test_results_are_read_from_the_runs_bucket(storage_emulator, recorded):
    from google.cloud import storage

    client = storage.Client()
    bucket = client.bucket("zs-zeta-swarm-test-runs")
    if not bucket.exists():
        client.create_bucket(bucket)
    out = recorded.trial_dir("read-test", "12")
    final = {"status": "completed", "extrapolation_error": 0.0123}
    bucket.blob("read-test/trials/12/final.json").upload_from_string(json.dumps(final))
    assert json.loads(read_output(out, "final.json")) == final
    assert read_output(out, "metrics.jsonl") is None  # not written yet
    assert read_output(out + "/", "final.json") is not None


def test_a_job_moves_through_the_vertex_states_on_the_fake_clock(
    recorded, job_service, calls, credentials, clock
):
    runner = VertexRunner(recorded, STUDY, credentials=credentials, calls=calls)
    job = runner.launch(spec(recorded))
    seen = []
    for dt in (0, 10, 30, 600):  # Outcome(): 5 s queued, 30 s provisioning, 600 s running
        clock.advance(dt)
        (j,) = runner.jobs()
        seen.append((job_service.jobs[job.job_id].state.name, j.state, j.started, j.ended))
    t0 = job.created
    assert seen == [
        ("JOB_STATE_QUEUED", JobState.QUEUED, None, None),
        ("JOB_STATE_PENDING", JobState.QUEUED, None, None),
        ("JOB_STATE_RUNNING", JobState.RUNNING, t0 + 35, None),
        ("JOB_STATE_SUCCEEDED", JobState.SUCCEEDED, t0 + 35, t0 + 635),
    ]


def test_a_job_deleted_by_hand_counts_as_a_failed_attempt(recorded, job_service, calls, credentials, clock):
    runner = VertexRunner(recorded, STUDY, credentials=credentials, calls=calls)
    job = runner.launch(spec(recorded))
    runner.jobs()
    del job_service.jobs[job.job_id]
    (gone,) = runner.jobs()
    assert gone.state is JobState.FAILED and gone.detail.startswith("the CustomJob was deleted")


def test_a_cancel_error_is_logged_and_the_cancel_is_asked_again_later(
    recorded, job_service, cloud, calls, credentials, caplog
):
    runner = VertexRunner(recorded, STUDY, credentials=credentials, calls=calls)
    job = runner.launch(spec(recorded))
    cloud.fail("cancel_custom_job", exceptions.InternalServerError("500: backend error"), times=5)
    runner.cancel(job.job_id)  # the policy's 5 attempts all fail: logged, not raised
    assert "cancel" in caplog.text and job_service.jobs[job.job_id].state == JS.JOB_STATE_QUEUED
    runner.cancel(job.job_id)  # the next pass
    assert job_service.jobs[job.job_id].state == JS.JOB_STATE_CANCELLING


def test_the_storage_client_is_given_the_project(storage_emulator, monkeypatch):
    from orchestrator.runners import vertex

    vertex._storage_client.cache_clear()
    assert (
        read_output("gs://zs-zeta-swarm-test-runs/none/trials/1", "final.json", project="p-from-outputs")
        is None
    )
    (client,) = [vertex._storage_client(storage_emulator, "p-from-outputs")]
    assert client.project == "p-from-outputs"


def test_strict_fakes_refuse_what_vertex_refuses(recorded, job_service, cloud, calls, credentials):
    from orchestrator.vertex_settings import MachineSpec

    bad_machines = {
        "minibatch": MachineSpec("g2-standard-8", "NVIDIA_A100_80GB", 1),  # an L4 machine
        "fullbatch": MachineSpec("a2-ultragpu-1g", "NVIDIA_A100_80GB", 2),  # one GPU on -1g
    }
    runner = VertexRunner(
        replace(recorded, machines=bad_machines), STUDY, credentials=credentials, calls=calls
    )
    for team in bad_machines:
        with pytest.raises(PermanentJobError, match="requires accelerator"):
            runner.launch(spec(recorded, team=team, trial=team))
    disk = VertexRunner(replace(recorded, boot_disk_gb=20), STUDY, credentials=credentials, calls=calls)
    with pytest.raises(PermanentJobError, match="boot_disk_size_gb 20"):
        disk.launch(spec(recorded, trial="4"))
    from google.cloud import aiplatform

    job = runner._sdk_job(
        spec(recorded, team="minibatch"), "us-docker.pkg.dev/p/r/trainer@sha256:" + "a" * 64
    )
    job._gca_resource.display_name = "x" * 129
    job._gca_resource.job_spec.worker_pool_specs[0].machine_spec.accelerator_type = "NVIDIA_L4"
    with pytest.raises(exceptions.InvalidArgument, match="display_name must be 1-128"):
        job.submit()
    assert isinstance(job, aiplatform.CustomJob)


def test_the_fake_gpu_quota_answers_429_beyond_the_grant(recorded, mocker, cloud, calls, credentials):
    from vertex.fakes import FakeJobService

    FakeJobService(cloud, gpu_quota={("us-central1", "NVIDIA_L4"): 2}).install(mocker)
    runner = VertexRunner(recorded, STUDY, credentials=credentials, calls=calls)
    runner.launch(spec(recorded, trial="1"))
    runner.launch(spec(recorded, trial="2"))
    with pytest.raises(RetryableCloudError, match="exceed quota limits.*nvidia_l4"):
        runner.launch(spec(recorded, trial="3"))


def test_jobs_are_attached_to_the_terraform_tensorboard(recorded, job_service, cloud, calls, credentials):
    board = "projects/zeta-swarm-test/locations/us-central1/tensorboards/4242"
    runner = VertexRunner(replace(recorded, tensorboard=board), STUDY, credentials=credentials, calls=calls)
    s = spec(recorded)
    planned = runner.job_request(s)
    runner.launch(s)
    sent = cloud.requests("create_custom_job")[0].custom_job
    assert sent.job_spec.tensorboard == board and sent == planned
    assert sent.job_spec.base_output_directory.output_uri_prefix == s.output_dir  # holds logs/


def test_the_tensorboard_output_is_optional_and_checked(tmp_path):
    from orchestrator.errors import ConfigError

    raw = json.loads(INFRA_JSON.read_text())
    assert load_infra_outputs(str(INFRA_JSON), {}).tensorboard == ""
    board = "projects/zeta-swarm-test/locations/us-central1/tensorboards/4242"
    (tmp_path / "with.json").write_text(json.dumps(raw | {"tensorboard": {"value": board}}))
    infra = load_infra_outputs(str(tmp_path / "with.json"), {})
    assert load_vertex_settings(VERTEX_YAML, infra).tensorboard == board
    (tmp_path / "bad.json").write_text(json.dumps(raw | {"tensorboard": {"value": "4242"}}))
    with pytest.raises(
        ConfigError, match="tensorboard = '4242' is not projects/P/locations/R/tensorboards/ID"
    ):
        load_infra_outputs(str(tmp_path / "bad.json"), {})
