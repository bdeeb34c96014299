"""The controller against the local backend (real processes running the fake trainer) with a fake
clock: completion, divergence, retries, giving up, the failed-trial cap, the budget guard, stop
requests, early stopping and the repairs a restart performs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from orchestrator.early_stopping import BaselineSigmaRule, EarlyStopping, MedianRule
from orchestrator.phases import SwarmRun
from orchestrator.run_files import STOP_FILE
from orchestrator.runners.base import JobState
from orchestrator.tuners.base import TunerState, TunerTrial
from swarm_helpers import FAKE_TRAINER, FakeClock, local_controller, settings

from orchestrator import backends

CONTRACT_TRIAL_KEYS = {
    "id",
    "state",
    "params",
    "value",
    "stderr",
    "metrics",
    "output_dir",
    "attempts",
    "created",
    "started",
    "ended",
    "machine",
    "reason",
}


def _prepare(tmp_path: Path, study_db: Path, **update):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.move(study_db, run_dir / "study.db")
    env = update.pop("env", {})
    s = settings(run_dir, **update)
    return s.model_copy(
        update={"backend": s.backend.model_copy(update={"env": {"FAKE_EPOCH_S": "0.01", **env}})}
    )


def _swarm(s, clock=None):
    clock = clock or FakeClock()
    lines: list[str] = []
    snap = SwarmRun(s, trainer_command=FAKE_TRAINER, clock=clock, sleep=clock.sleep, out=lines.append).run()
    return snap, lines


def _wait_jobs(runner, states, clock, n=None):
    for _ in range(1500):
        jobs = runner.jobs()
        if jobs and all(j.state in states for j in jobs) and (n is None or len(jobs) == n):
            return jobs
        clock.sleep(0)
    raise AssertionError(f"jobs never reached {states}: {runner.jobs()}")


def test_trials_complete_and_trials_json_follows_the_contract(tmp_path, study_db):
    s = _prepare(tmp_path, study_db, max_trials=4, parallel=2)
    snap, lines = _swarm(s)
    assert snap["ended_because"] == "round complete"
    assert [t["state"] for t in snap["trials"]] == ["COMPLETED"] * 4
    on_disk = json.loads((Path(s.run_dir) / "trials.json").read_text())
    assert {"study", "phase", "team", "backend", "objective", "updated", "baselines", "trials"} <= set(
        on_disk
    )
    for t in on_disk["trials"]:
        assert CONTRACT_TRIAL_KEYS <= set(t)
        final = json.loads((Path(t["output_dir"]) / "final.json").read_text())
        assert t["value"] == pytest.approx(final["extrapolation_error"])
        assert t["stderr"] == pytest.approx(final["extrapolation_stderr"])
        assert t["metrics"]["baseline_explicit"] == pytest.approx(final["baseline_explicit"])
        assert t["metrics"]["test_paired_diff"] == pytest.approx(final["test_paired_diff"])
        assert t["vs_baseline"] == "worse" and t["beats_baseline"] is False  # paired, tune windows
        assert t["attempts"] == 1 and t["started"] <= t["ended"]
        assert t["output_dir"] == str(Path(s.run_dir).resolve() / "trials" / t["id"])
        # The trial ran with the fixed overrides and its own knobs.
        config = (Path(t["output_dir"]) / "config.yaml").read_text()
        assert f"loss.gue_nll_weight: {t['params']['loss.gue_nll_weight']!r}" in config
        assert "loss.mse_weight: 1.0" in config and "model.primes: [2,3,5,7,11,13]" in config
    assert set(on_disk["baselines"]) == {
        "baseline_index",
        "baseline_ar",
        "baseline_explicit",
        "baseline_smoothed",
        "baseline_smoothed_ar",
    }
    # Never more than `parallel` trainers at once (from the jobs' own start and end times).
    jobs = backends.make_runner(s).jobs()
    for j in jobs:
        overlapping = [k for k in jobs if k.started < j.ended and j.started < k.ended]
        assert len(overlapping) <= 2
    assert sum("completed" in line for line in lines) == 4
    # The tuner's intermediate values are the val-window curve; its final value the tune windows'.
    import optuna

    study = optuna.load_study(study_name=s.study, storage=f"sqlite:///{Path(s.run_dir) / 'study.db'}")
    for ft, t in zip(study.trials, on_disk["trials"], strict=True):
        rows = [json.loads(x) for x in (Path(t["output_dir"]) / "metrics.jsonl").read_text().splitlines()]
        assert ft.intermediate_values == {r["epoch"]: r["val_extrapolation_error"] for r in rows}
        assert ft.value == t["value"] != rows[-1]["val_extrapolation_error"]
    events = [json.loads(x)["event"] for x in (Path(s.run_dir) / "events.jsonl").read_text().splitlines()]
    assert events.count("started") == 4 and events.count("completed") == 4


def test_a_failed_attempt_is_retried_in_the_same_output_dir(tmp_path, study_db):
    s = _prepare(tmp_path, study_db, max_trials=2, parallel=2, env={"FAKE_FAIL_TRIALS": "0"})
    snap, _ = _swarm(s)
    t0 = snap["trials"][0]
    assert t0["state"] == "COMPLETED" and t0["attempts"] == 2
    assert (Path(t0["output_dir"]) / "fake_starts").read_text() == "2"
    assert (Path(t0["output_dir"]) / "attempt-1.log").exists() and (
        Path(t0["output_dir"]) / "attempt-2.log"
    ).exists()


def test_gives_up_after_max_retries_and_stops_the_study_at_max_failed_trials(tmp_path, study_db):
    s = _prepare(
        tmp_path,
        study_db,
        max_trials=6,
        parallel=2,
        max_retries=1,
        max_failed_trials=2,
        env={"FAKE_FAIL_TRIALS": ",".join(map(str, range(6))), "FAKE_FAIL_TIMES": "99"},
    )
    snap, _ = _swarm(s)
    assert "max_failed_trials=2" in snap["ended_because"]
    failed = [t for t in snap["trials"] if t["state"] == "FAILED"]
    assert len(failed) >= 2 and len(snap["trials"]) < 6
    assert all(
        t["attempts"] == 2 and "gave up after 2 attempt(s): exit code 1" in t["reason"] for t in failed
    )


def test_a_diverged_trial_is_infeasible(tmp_path, study_db):
    s = _prepare(tmp_path, study_db, max_trials=2, parallel=2, env={"FAKE_DIVERGE_TRIALS": "1"})
    snap, _ = _swarm(s)
    t1 = snap["trials"][1]
    assert t1["state"] == "INFEASIBLE" and t1["value"] is None
    assert "diverged" in t1["reason"] and "nan" in t1["reason"]
    assert snap["trials"][0]["state"] == "COMPLETED"


def test_the_budget_guard_starts_nothing_beyond_the_cap(tmp_path, study_db):
    # Real job times: a cap of 0.0004 GPU-hours (1.44 s) is spent by the first two ~0.8 s trials.
    s = _prepare(
        tmp_path,
        study_db,
        max_trials=20,
        parallel=2,
        gpu_hour_cap=0.0004,
        trial_hours_estimate=0.0001,
        env={"FAKE_EPOCH_S": "0.3"},
    )
    s = s.model_copy(update={"backend": s.backend.model_copy(update={"poll_s": 0.05})})
    lines: list[str] = []
    snap = SwarmRun(s, trainer_command=FAKE_TRAINER, out=lines.append).run()
    assert "GPU-hour cap" in snap["ended_because"]
    assert 2 <= len(snap["trials"]) < 20
    # Stopped where one more trial would pass the cap, not before.
    assert snap["budget"]["gpu_hours"] > 0.0004 / 2
    assert all(t["state"] == "COMPLETED" for t in snap["trials"])  # nothing cut short, just not started
    assert any("cost estimate" in line for line in lines)


def test_stop_request_stops_active_trials_and_cancels_their_jobs(tmp_path, study_db):
    s = _prepare(tmp_path, study_db, max_trials=4, parallel=2, env={"FAKE_HANG_TRIALS": "0,1,2,3"})
    clock = FakeClock()
    ctl, tuner, runner = local_controller(s, clock)
    rnd = s.rounds[0]  # phase 2: the Bayesian round "weights"
    ctl.reconcile(rnd)
    _wait_jobs(runner, {JobState.RUNNING}, clock, n=2)
    (Path(s.run_dir) / STOP_FILE).write_text("now")
    result = ctl.reconcile(rnd)
    assert result.done and "orchestrator stop" in result.reason
    assert [t.state for t in tuner.trials()] == [TunerState.STOPPED] * 2
    assert {j.state for j in _wait_jobs(runner, {JobState.CANCELLED}, clock)} == {JobState.CANCELLED}
    assert len(tuner.trials()) == 2  # nothing new was started


def test_restart_launches_a_suggested_trial_and_cancels_the_job_of_a_finished_one(tmp_path, study_db):
    s = _prepare(tmp_path, study_db, max_trials=2, parallel=2, env={"FAKE_HANG_TRIALS": "0"})
    clock = FakeClock()
    ctl, tuner, runner = local_controller(s, clock)
    rnd = s.rounds[0]  # phase 2: the Bayesian round "weights"
    ctl.reconcile(rnd)
    _wait_jobs(runner, {JobState.RUNNING, JobState.SUCCEEDED}, clock, n=2)
    # A controller that died right after suggesting (trial 2) and right after stopping trial 0:
    (extra,) = tuner.suggest(1)
    tuner.stop("0", "early stop")
    s3 = s.model_copy(update={"max_trials": 3})
    ctl2, _, _ = local_controller(s3, clock)
    ctl2.reconcile(s3.rounds[0])
    jobs = {j.trial_id: j for j in runner.jobs()}
    assert extra.id in jobs and jobs[extra.id].attempt == 1
    assert _wait_jobs(runner, {JobState.CANCELLED, JobState.SUCCEEDED}, clock, n=3)
    assert {j.trial_id: j.state for j in runner.jobs()}["0"] is JobState.CANCELLED


def _with_epochs(s, epochs):
    machines = {
        t: m.model_copy(update={"overrides": {**m.overrides, "train.epochs": epochs}})
        for t, m in s.team_machines.items()
    }
    return s.model_copy(update={"epochs": epochs, "team_machines": machines})


def _row(epoch, value, diff=0.0, paired_stderr=0.001):
    """A metrics.jsonl row: only the val windows are evaluated per epoch."""
    return {
        "epoch": epoch,
        "val_extrapolation_error": value,
        "val_extrapolation_stderr": 0.004,
        "val_baseline_index": 0.111,
        "val_baseline_smoothed": 0.0125,
        "val_best_baseline": "baseline_smoothed",
        "val_paired_diff": diff,
        "val_paired_stderr": paired_stderr,
        # The tune windows' keys are not in a metrics row; were they, no rule may read them.
        "extrapolation_error": 0.001,
        "paired_diff": -1.0,
    }


def test_baseline_sigma_rule_stops_only_trials_without_a_clear_gain(tmp_path, study_db):
    s = _prepare(tmp_path, study_db)
    rules = EarlyStopping(
        baseline_sigma=BaselineSigmaRule(at_fraction=0.35, sigmas=1.0), median=MedianRule(enabled=False)
    )
    ctl, _, _ = local_controller(
        _with_epochs(s.model_copy(update={"early_stopping": rules}), 10), FakeClock()
    )
    trial = TunerTrial("7", {}, TunerState.ACTIVE)
    early = {e: _row(e, 0.02, diff=0.0075) for e in (1, 2, 3)}
    assert ctl.early_stop_reason(trial, early, []) is None  # too early
    # Paired on the val windows: 0.0005 below the best baseline with paired s.e. 0.001 is not 1 sigma.
    losing = {2: _row(2, 0.02, diff=0.0075), 4: _row(4, 0.012, diff=-0.0005)}
    reason = ctl.early_stop_reason(trial, losing, [])
    assert "the best baseline (baseline_smoothed) is -0.0005, not 1 paired sigma (0.001) below 0" in reason
    # The same difference is 1 sigma when the model tracks the baseline window by window.
    assert ctl.early_stop_reason(trial, {4: _row(4, 0.012, diff=-0.0005, paired_stderr=0.0004)}, []) is None
    winning = {2: _row(2, 0.02, diff=0.0075), 4: _row(4, 0.0085, diff=-0.004)}
    assert ctl.early_stop_reason(trial, winning, []) is None


def test_median_rule_stops_a_trial_worse_than_the_median_of_its_peers(tmp_path, study_db):
    s = _prepare(tmp_path, study_db)
    rules = EarlyStopping(
        baseline_sigma=BaselineSigmaRule(enabled=False), median=MedianRule(warmup_fraction=0.3, min_trials=3)
    )
    ctl, _, _ = local_controller(
        _with_epochs(s.model_copy(update={"early_stopping": rules}), 10), FakeClock()
    )
    peers = []
    for i, v in enumerate([0.010, 0.012, 0.014]):
        peers.append(TunerTrial(str(i), {}, TunerState.COMPLETED, value=v))
        ctl._curves[str(i)] = {4: _row(4, v)}
        ctl._final_curves.add(str(i))
    me = TunerTrial("9", {}, TunerState.ACTIVE)
    assert "worse than the median 0.012" in ctl.early_stop_reason(me, {4: _row(4, 0.013)}, peers)
    assert ctl.early_stop_reason(me, {4: _row(4, 0.011)}, peers) is None
    assert ctl.early_stop_reason(me, {2: _row(2, 0.05)}, peers) is None  # before the warm-up


def test_a_second_controller_on_the_same_run_dir_is_refused(tmp_path, study_db):
    from orchestrator.run_files import ControllerBusy, ControllerLock

    s = _prepare(tmp_path, study_db, max_trials=1)
    held = ControllerLock(s.run_dir)
    held.acquire()
    try:
        with pytest.raises(ControllerBusy, match="already running"):
            _swarm(s)
    finally:
        held.release()
    assert not (Path(s.run_dir) / "trials.json").exists()
