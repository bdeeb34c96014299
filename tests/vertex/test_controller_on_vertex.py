"""The real controller on the Vertex backends over the fakes: a phase-2 round with a preemption,
and the same round killed between any two cloud calls and restarted."""

from __future__ import annotations

import json
import math

import pytest
from google.api_core import exceptions
from orchestrator.controller import Controller
from orchestrator.runners import vertex
from orchestrator.settings_loader import load_settings
from orchestrator.tuners.base import TunerState
from orchestrator.tuners.vizier import VizierTuner
from orchestrator.vertex_settings import CloudCalls, RetryPolicy

from orchestrator import backends
from vertex.conftest import DIGEST
from vertex.fakes import (
    JS,
    Crash,
    FakeArtifactRegistry,
    FakeClock,
    FakeCloud,
    FakeJobService,
    FakeVizierService,
    Outcome,
)
from vertex.test_settings import INFRA_JSON

MAX_TRIALS, PARALLEL = 4, 2


def objective(args: list[str]) -> float:
    """A smooth stand-in for the extrapolation error with its minimum at nll=10**-1.5, mmd=1."""
    sets = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith("--"))
    nll, mmd = float(sets["loss.gue_nll_weight"]), float(sets["loss.gue_mmd_weight"])
    return 0.01 + 0.001 * ((math.log10(nll) + 1.5) ** 2 + math.log10(mmd) ** 2)


class World:
    """One cloud (fake Vizier, JobService, Artifact Registry, the storage emulator) and the
    controllers that drive it; `controller()` is a freshly started process."""

    def __init__(self, mocker, run_dir, credentials, preempt: set[tuple[str, int]], settings, emulator: bool):
        self.clock = FakeClock()
        self.cloud = FakeCloud(self.clock)
        self.credentials = credentials
        self.settings = settings.model_copy(update={"run_dir": str(run_dir)})
        run_dir.mkdir(parents=True)
        # The factory's cached settings: the image tag is the git HEAD, which other commits move meanwhile.
        self.vs = backends._load_vertex_settings(str(self.settings.backend_file), self.settings.infra_outputs)
        FakeArtifactRegistry(self.cloud).install(mocker).push(
            self.vs.image_repository, "trainer", self.vs.image_tag, DIGEST
        )
        FakeVizierService(self.cloud, seed=5).install(mocker)
        self.preempt = preempt
        self.exits: dict[tuple[str, int], int] = {}  # (trial, attempt) -> the trainer's exit code
        self.files: dict[str, str] = {}  # the runs bucket in memory, when not on the emulator
        self.read_output = vertex.read_output if emulator else lambda d, name: self.files.get(f"{d}/{name}")
        if emulator:
            from google.cloud import storage

            self.bucket = storage.Client().bucket(self.vs.runs_bucket.removeprefix("gs://"))
            if not self.bucket.exists():
                self.bucket.create()

        def outcome(job):
            key = (job.labels["trial"], int(job.labels["attempt"]))
            if key in self.preempt:
                return Outcome(run_s=200, final=JS.JOB_STATE_FAILED, error="Preempted: the VM was reclaimed")
            if key in self.exits:  # Vertex's message for a container's non-zero exit
                error = f"The replica workerpool0-0 exited with a non-zero status of {self.exits[key]}."
                return Outcome(
                    run_s=100, final=JS.JOB_STATE_FAILED, error=error + " Termination reason: Error."
                )
            return Outcome(run_s=300)

        self.jobs = FakeJobService(self.cloud, outcome, on_success=self._trainer_writes_final).install(mocker)

    def _trainer_writes_final(self, job):
        args = list(job.job_spec.worker_pool_specs[0].container_spec.args)
        out = job.job_spec.base_output_directory.output_uri_prefix
        final = {
            "status": "completed",
            "extrapolation_error": objective(args),
            "extrapolation_stderr": 0.0005,
            "baseline_index": 0.05,
            "baseline_ar": 0.03,
            "baseline_explicit": 0.013,
            "epochs_done": 2,
        }
        if self.read_output is vertex.read_output:
            self.bucket.blob(out.split("/", 3)[3] + "/final.json").upload_from_string(json.dumps(final))
        else:
            self.files[f"{out}/final.json"] = json.dumps(final)

    def controller(self) -> Controller:
        calls = CloudCalls(RetryPolicy(attempts=4, base_s=1.0, cap_s=5.0), sleeper=self.clock.sleep)
        plan = self.settings.rounds[0]
        self.tuner = VizierTuner.from_settings(
            self.vs,
            self.settings.study,
            plan.params(),
            credentials=self.credentials,
            calls=calls,
            clock=self.clock,
        )
        self.runner = runner = vertex.VertexRunner(
            self.vs, self.settings.study, credentials=self.credentials, calls=calls
        )
        self.round = plan
        return Controller(
            self.settings,
            self.tuner,
            runner,
            self.read_output,
            lambda tid: self.vs.trial_dir(self.settings.study, tid),
            clock=self.clock,
            sleep=self.clock.sleep,
        )

    def run(self, ctl: Controller, passes: int = 200, poll_s: float = 60.0) -> None:
        for _ in range(passes):
            if ctl.reconcile(self.round).done:
                return
            self.clock.advance(poll_s)
        raise AssertionError("the round did not finish")

    def check(self) -> None:
        trials = self.controller().tuner.trials()
        assert len(trials) == MAX_TRIALS, [t.id for t in trials]  # none lost, none orphaned
        for t in trials:
            assert t.state is TunerState.COMPLETED, t
        by_key = {}
        for job in self.jobs.jobs.values():
            key = (job.labels["trial"], job.labels["attempt"])
            assert key not in by_key, f"two jobs for trial {key[0]} attempt {key[1]}"
            by_key[key] = job
        for t in trials:
            attempts = sorted(int(a) for tid, a in by_key if tid == t.id)
            assert attempts == ([1, 2] if (t.id, 1) in self.preempt else [1])
            final = json.loads(self.read_output(self.vs.trial_dir(self.settings.study, t.id), "final.json"))
            assert t.value == pytest.approx(final["extrapolation_error"])


@pytest.fixture(scope="module")
def phase2():
    """Phase 2 on Vertex with the smoke profile, resolved once by the real config loader."""
    return load_settings(
        2, "minibatch", "vertex", "smoke", PARALLEL, MAX_TRIALS, "unused", infra_outputs=str(INFRA_JSON)
    )


def test_a_round_with_a_preemption_and_quota_errors_completes(
    mocker, tmp_path, credentials, storage_emulator, phase2
):
    world = World(mocker, tmp_path / "run", credentials, {("2", 1)}, phase2, emulator=True)
    world.cloud.fail("create_custom_job", exceptions.TooManyRequests("429: custom training quota"), times=3)
    world.run(world.controller())
    world.check()
    retried = [j for j in world.jobs.jobs.values() if j.labels["trial"] == "2"]
    assert {j.job_spec.base_output_directory.output_uri_prefix for j in retried} == {
        world.vs.trial_dir(world.settings.study, "2")
    }
    assert len(world.clock.slept) == 3  # backed off three times, lost nothing
    snap = json.loads((tmp_path / "run" / "trials.json").read_text())  # what `orchestrator status` shows
    assert [t["state"] for t in snap["trials"]] == ["COMPLETED"] * MAX_TRIALS


def test_killing_the_controller_between_any_two_cloud_calls_loses_and_duplicates_nothing(
    mocker, tmp_path, credentials, phase2
):
    clean = World(mocker, tmp_path / "clean", credentials, {("2", 1)}, phase2, emulator=False)
    clean.run(clean.controller(), poll_s=400)  # every job ends between two passes: few passes, few calls
    n_calls = clean.cloud.total_calls
    clean.check()
    assert n_calls > 30
    for k in range(1, n_calls + 1):
        for after in (False, True):
            mocker.stopall()
            world = World(mocker, tmp_path / f"k{k}-{after}", credentials, {("2", 1)}, phase2, emulator=False)
            world.cloud.crash_at(k, after=after)
            with pytest.raises(Crash):
                world.run(world.controller(), poll_s=400)
            world.run(world.controller(), poll_s=400)  # a new process: fresh tuner, runner and controller
            world.check()


def test_orchestrator_stop_stops_the_trials_in_vizier_and_cancels_their_jobs(
    mocker, tmp_path, credentials, phase2
):
    from orchestrator.run_files import STOP_FILE

    world = World(mocker, tmp_path / "run", credentials, set(), phase2, emulator=False)
    ctl = world.controller()
    ctl.reconcile(world.round)
    world.clock.advance(60)
    ctl.reconcile(world.round)  # both jobs RUNNING now
    (tmp_path / "run" / STOP_FILE).touch()
    assert ctl.reconcile(world.round).done
    world.clock.advance(60)
    world.controller()  # a fresh process reads the truth back
    for t in world.tuner.trials():
        assert t.state is TunerState.STOPPED and "orchestrator stop" in t.reason
    assert [j.state.value for j in world.runner.jobs()] == ["CANCELLED", "CANCELLED"]
    assert (
        len(world.cloud.requests("stop_trial")) == 2 and len(world.cloud.requests("cancel_custom_job")) == 2
    )


def test_a_trial_failing_every_attempt_fails_in_vizier_and_max_failed_trials_ends_the_round(
    mocker, tmp_path, credentials, phase2
):
    strict = phase2.model_copy(update={"max_failed_trials": 2, "max_retries": 1})
    every = {(str(t), a) for t in range(1, 10) for a in (1, 2)}
    world = World(mocker, tmp_path / "run", credentials, every, strict, emulator=False)
    ctl = world.controller()
    for _ in range(50):
        result = ctl.reconcile(world.round)
        if result.done:
            break
        world.clock.advance(400)
    assert result.done and "max_failed_trials=2" in result.reason
    failed = [t for t in world.tuner.trials() if t.state is TunerState.FAILED]
    assert len(failed) == 2
    for t in failed:
        assert "gave up after 2 attempt(s)" in t.reason and "Preempted" in t.reason
        reason = world.cloud.requests("complete_trial")
        assert any(r.infeasible_reason.startswith("FAILED: gave up") for r in reason)
        dirs = {j.job_spec.base_output_directory.output_uri_prefix for j in world.jobs.by_labels(trial=t.id)}
        assert dirs == {world.vs.trial_dir(world.settings.study, t.id)}  # the retry resumed in place


def test_a_trial_whose_trainer_exits_2_is_failed_without_a_retry_and_exit_75_uses_no_retry(
    mocker, tmp_path, credentials, phase2
):
    """The local runner's exit-code rules on Vertex: bad input (exit 2) is not retried; an error of
    the environment (exit 75) is retried without using up one of the trial's max_retries=0."""
    strict = phase2.model_copy(update={"max_retries": 0})
    world = World(mocker, tmp_path / "run", credentials, set(), strict, emulator=False)
    world.exits = {("1", 1): 2, ("2", 1): 75}
    ctl = world.controller()
    for _ in range(50):
        if ctl.reconcile(world.round).done:
            break
        world.clock.advance(400)
    trials = {t.id: t for t in world.tuner.trials()}
    assert trials["1"].state is TunerState.FAILED
    assert "the trainer refused its input (not retried)" in trials["1"].reason
    assert [j.labels["attempt"] for j in world.jobs.by_labels(trial="1")] == ["1"]
    assert trials["2"].state is TunerState.COMPLETED  # attempt 2 ran although max_retries is 0
    assert sorted(j.labels["attempt"] for j in world.jobs.by_labels(trial="2")) == ["1", "2"]
    assert all(t.state is TunerState.COMPLETED for tid, t in trials.items() if tid != "1")


def test_quota_errors_that_outlast_the_backoff_retry_the_pass_and_lose_nothing(
    mocker, tmp_path, credentials, phase2
):
    world = World(mocker, tmp_path / "run", credentials, set(), phase2, emulator=False)
    # Two passes' worth of backoff (4 calls each) spent on 429s: without the controller's own
    # catch the first RetryableCloudError would end the swarm run.
    world.cloud.fail("create_custom_job", exceptions.TooManyRequests("429: custom training quota"), times=8)
    ctl = world.controller()
    result = ctl.run(world.round, max_passes=200)
    assert result.done and result.reason == "round complete"
    world.check()
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    cloud_errors = [e for e in events if e["event"] == "cloud_error"]
    assert len(cloud_errors) == 2 and "429" in cloud_errors[0]["detail"]
    assert world.settings.backend.poll_s in world.clock.slept


def test_a_job_that_vertex_refuses_fails_its_trial_and_the_swarm_goes_on(
    mocker, tmp_path, credentials, phase2
):
    world = World(mocker, tmp_path / "run", credentials, set(), phase2, emulator=False)
    world.cloud.fail("create_custom_job", exceptions.InvalidArgument("400: bad machine spec"), times=1)
    ctl = world.controller()
    first = ctl.reconcile(world.round)
    # The refusal fails its trial and stops launches in that pass; the rest of the batch waits
    # ACTIVE in Vizier, untouched, and is launched by the next pass.
    assert first.launched == 0 and world.cloud.calls["create_custom_job"] == 1
    assert sorted(t.state.value for t in ctl.tuner.trials()) == ["ACTIVE"] * (PARALLEL - 1) + ["FAILED"]
    result = ctl.run(world.round, max_passes=200)
    assert result.done and result.reason == "round complete"
    trials = world.controller().tuner.trials()
    states = sorted(t.state.value for t in trials)
    assert states == ["COMPLETED"] * (MAX_TRIALS - 1) + ["FAILED"]
    failed = next(t for t in trials if t.state is TunerState.FAILED)
    assert "refused the job" in failed.reason and "400" in failed.reason
    assert not world.jobs.by_labels(trial=failed.id)  # nothing was created for it, nothing retried


def test_refused_jobs_still_count_towards_max_failed_trials(mocker, tmp_path, credentials, phase2):
    world = World(
        mocker,
        tmp_path / "run",
        credentials,
        set(),
        phase2.model_copy(update={"max_failed_trials": 2}),
        False,
    )
    world.cloud.fail("create_custom_job", exceptions.InvalidArgument("400: bad machine spec"), times=2)
    result = world.controller().run(world.round, max_passes=200)
    assert result.done and "max_failed_trials=2" in result.reason


def test_a_refused_permission_is_one_line_and_loses_no_suggestion(mocker, tmp_path, credentials, phase2):
    from orchestrator.cloud_permissions import CloudPermissionDenied

    world = World(mocker, tmp_path / "run", credentials, set(), phase2, emulator=False)
    denied = "Permission 'iam.serviceAccounts.actAs' denied on service account zs-trainer@p.iam"
    world.cloud.fail("create_custom_job", exceptions.PermissionDenied(denied), times=1)
    ctl = world.controller()
    with pytest.raises(CloudPermissionDenied) as e:
        ctl.reconcile(world.round)
    message = str(e.value)
    assert "\n" not in message and e.value.exit_code == 2
    assert "iam.serviceAccounts.actAs" in message and "roles/iam.serviceAccountUser" in message
    assert "zs-orchestrator@zeta-swarm-test.iam.gserviceaccount.com" in message
    snap = json.loads((tmp_path / "run" / "trials.json").read_text())  # written although the pass died
    assert [t["state"] for t in snap["trials"]] == ["PENDING"] * PARALLEL
    # After the fix, the next start launches the very trials that were suggested: none lost, none new.
    result = world.controller().run(world.round, max_passes=200)
    assert result.reason == "round complete"
    assert sorted(t.state.value for t in world.controller().tuner.trials()) == ["COMPLETED"] * MAX_TRIALS


def _sets(args) -> dict[str, str]:
    args = list(args)
    return dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--set")


def test_cloud_trials_read_a_repo_relative_config_and_the_data_bucket(mocker, tmp_path, credentials, phase2):
    """The container runs in /opt/zeta-swarm with configs/ copied in and no local data: the config is
    repo-relative, the zeros are gs://<data_bucket>/odlyzko; the dry run shows the same args."""
    from click.testing import CliRunner
    from orchestrator.cli import main

    world = World(mocker, tmp_path / "run", credentials, set(), phase2, emulator=False)
    world.controller().reconcile(world.round)
    created = world.cloud.requests("create_custom_job")
    assert len(created) == PARALLEL
    args = list(created[0].custom_job.job_spec.worker_pool_specs[0].container_spec.args)
    assert args[:3] == ["train", "--config", "configs/smoke.yaml"]  # the smoke profile's own config
    data_bucket = json.loads(INFRA_JSON.read_text())["data_bucket"]["value"]
    assert _sets(args)["data.path"] == f"gs://{data_bucket}/odlyzko"

    result = CliRunner().invoke(
        main,
        [
            *("swarm", "--phase", "2", "--backend", "vertex", "--profile", "smoke"),
            *(
                "--parallel",
                str(PARALLEL),
                "--max-trials",
                str(MAX_TRIALS),
                "--run-dir",
                str(tmp_path / "dry"),
            ),
            *("--infra-outputs", str(INFRA_JSON), "--dry-run", "--json"),
        ],
    )
    assert result.exit_code == 0, result.output
    planned = json.loads(result.stdout)["jobs"][0]["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"]
    assert planned[:3] == args[:3] and _sets(planned)["data.path"] == _sets(args)["data.path"]


def test_a_gs_dataset_is_kept_and_a_local_one_without_a_data_bucket_is_one_line(tmp_path, monkeypatch):
    from orchestrator.errors import ConfigError

    monkeypatch.setenv("ZETA_SWARM_DATA", "gs://other-bucket/zeros-1e6/")
    s = load_settings(2, "minibatch", "vertex", "smoke", run_dir=tmp_path, infra_outputs=str(INFRA_JSON))
    assert s.data_path == "gs://other-bucket/zeros-1e6"
    monkeypatch.delenv("ZETA_SWARM_DATA")
    monkeypatch.delenv("ZETA_SWARM_INFRA_OUTPUTS", raising=False)
    with pytest.raises(ConfigError) as e:
        load_settings(2, "minibatch", "vertex", "smoke", run_dir=tmp_path / "r")
    msg = str(e.value)
    assert "data/odlyzko is local" in msg and "data_bucket" in msg and "\n" not in msg
    assert not (tmp_path / "r").exists()


def test_status_of_a_vertex_run_shows_machine_age_and_console_link(mocker, tmp_path, credentials, phase2):
    from click.testing import CliRunner
    from orchestrator.cli import main
    from orchestrator.leaderboard import format_status

    world = World(mocker, tmp_path / "run", credentials, set(), phase2, emulator=False)
    ctl = world.controller()
    ctl.reconcile(world.round)
    world.clock.advance(60)
    ctl.reconcile(world.round)  # both jobs RUNNING now
    snap = json.loads((tmp_path / "run" / "trials.json").read_text())
    running = [t for t in snap["trials"] if t["state"] == "RUNNING"]
    assert len(running) == PARALLEL
    for t in running:
        job = world.jobs.by_labels(trial=t["id"])[0]
        assert t["job_id"] == job.name
        assert t["job_detail"] == world.vs.console_url(job.name)
        assert t["machine"] == "g2-standard-8 + 1 x NVIDIA_L4"
    text = format_status(snap, now=running[0]["started"] + 125)
    lines = [line for line in text.splitlines() if line.strip().startswith("running")]
    assert len(lines) == PARALLEL
    assert "2m05s" in lines[0] and "g2-standard-8 + 1 x NVIDIA_L4" in lines[0]
    assert "https://console.cloud.google.com/vertex-ai/locations/us-central1/training/" in lines[0]

    out = CliRunner().invoke(main, ["status", "--run-dir", str(tmp_path / "run")])
    assert out.exit_code == 0, out.output
    assert out.output.count("https://console.cloud.google.com/vertex-ai/") == PARALLEL
    as_json = json.loads(
        CliRunner().invoke(main, ["status", "--run-dir", str(tmp_path / "run"), "--json"]).output
    )
    assert as_json["summary"]["counts"]["RUNNING"] == PARALLEL


def test_a_pass_that_ends_early_still_writes_trials_json(mocker, tmp_path, credentials, phase2):
    from orchestrator.errors import RetryableCloudError

    world = World(mocker, tmp_path / "run", credentials, set(), phase2, emulator=False)
    ctl = world.controller()
    ctl.reconcile(world.round)  # launches the first batch
    world.clock.advance(60)
    (tmp_path / "run" / "trials.json").unlink()
    world.cloud.fail("get_custom_job", exceptions.TooManyRequests("429"), times=4)
    world.cloud.fail("list_custom_jobs", exceptions.TooManyRequests("429"), times=4)
    with pytest.raises(RetryableCloudError):
        ctl.reconcile(world.round)
    snap = json.loads((tmp_path / "run" / "trials.json").read_text())  # rewritten on the way out
    assert len(snap["trials"]) == PARALLEL


def test_two_run_dirs_never_share_a_study_a_job_or_an_output_prefix(
    mocker, tmp_path, credentials, storage_emulator
):
    from orchestrator.phases import SwarmRun

    names = []
    world = None
    for name in ("one", "two"):
        settings = load_settings(
            2, "minibatch", "vertex", "smoke", 2, 2, tmp_path / name, infra_outputs=str(INFRA_JSON)
        )
        if world is None:
            world = World(mocker, tmp_path / "w", credentials, set(), settings, emulator=True)
        s = settings.model_copy(update={"run_dir": str(tmp_path / name)})
        SwarmRun(s, clock=world.clock, sleep=world.clock.sleep, out=lambda line: None).run()
        names.append(s.cloud_study)
    assert names[0] != names[1]
    studies = [r.study.display_name for r in world.cloud.requests("create_study")]
    assert studies == names  # the second run made its own study, not the first one's
    by_study = {n: [j for j in world.jobs.jobs.values() if j.labels["study"] == n] for n in names}
    assert [len(v) for v in by_study.values()] == [2, 2]
    prefixes = {
        n: {j.job_spec.base_output_directory.output_uri_prefix for j in v} for n, v in by_study.items()
    }
    assert not prefixes[names[0]] & prefixes[names[1]]
    for n in names:
        snap = json.loads((tmp_path / ("one" if n == names[0] else "two") / "trials.json").read_text())
        assert [t["state"] for t in snap["trials"]] == ["COMPLETED"] * 2  # from its own final.json
