"""Guards and rules whose loss the broader controller tests would not notice: the budget reserves
the estimated cost of every running trial before it starts another; the median rule compares each
trial's best value so far (the lowest error up to an epoch, not the highest); which round owns a trial
(the trainer command's layering: test_trial_command.py). (The unit tests here are what `make mutation` judges the
controller's helpers by.)"""

from __future__ import annotations

import shutil

from orchestrator.controller import (
    Outcome,
    Retry,
    Step,
    decide,
    judge_final,
    retry_verdict,
    round_owns,
    round_size,
)
from orchestrator.early_stopping import (
    BaselineSigmaRule,
    MedianRule,
    baseline_rule,
    best_upto,
    finite,
    last_value,
    median_rule,
)
from orchestrator.round_plan import RoundPlan
from orchestrator.run_files import job_hours
from orchestrator.runners.base import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, Job, JobState
from orchestrator.tuners.base import TunerState
from swarm_helpers import FakeClock, local_controller, settings


def test_running_trials_reserve_their_estimated_cost_before_another_starts(tmp_path, study_db):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.move(study_db, run_dir / "study.db")
    # Each trial is estimated at 1 GPU-hour; the cap buys 2.5 of them. The trials hang, so no job
    # ends and the estimate stays 1 h; the elapsed seconds count for almost nothing against it.
    s = settings(run_dir, max_trials=8, parallel=4, gpu_hour_cap=2.5, trial_hours_estimate=1.0)
    s = s.model_copy(
        update={
            "backend": s.backend.model_copy(
                update={"env": {"FAKE_HANG_TRIALS": ",".join(map(str, range(8)))}}
            )
        }
    )
    clock = FakeClock()
    events: list[dict] = []
    ctl, tuner, runner = local_controller(s, clock, on_event=events.append)
    rnd = s.rounds[0]  # phase 2: the Bayesian round "weights"
    try:
        first = ctl.reconcile(rnd)
        assert first.launched == 2  # 2 x 1 h fit under 2.5 h, a third would not
        second = ctl.reconcile(rnd)  # two running trials hold 2 h of the cap: nothing more starts
        assert second.launched == 0 and not second.done
        assert len(tuner.trials()) == 2
        held = [e for e in events if e["event"] == "budget"]
        assert held and held[-1]["detail"].startswith("2 trial(s) held back")
    finally:
        for job in runner.jobs():
            if not job.state.finished:
                runner.cancel(job.job_id)


def _curve(values: dict[int, float]) -> dict[int, dict]:
    # Both keys: the rule reads the val windows' objective once issue 10 lands, the overall one before.
    return {
        e: {"epoch": e, "extrapolation_error": v, "val_extrapolation_error": v} for e, v in values.items()
    }


def test_best_so_far_is_the_lowest_error_up_to_the_epoch():
    curve = _curve({1: 0.05, 2: 0.02, 3: 0.04, 4: 0.01})
    assert best_upto(curve, 1) == 0.05
    assert best_upto(curve, 3) == 0.02  # not the worst (0.05), not a later epoch's 0.01
    assert best_upto(curve, 9) == 0.01
    assert best_upto(curve, 0) is None


def test_a_round_owns_its_design_points_and_a_bayesian_round_everything_else():
    points = [{"model.window": 8, "optim.lr": 0.01}]
    design = RoundPlan(name="primes", kind="points", space=[], points=points, fixed={})
    bayes = RoundPlan(name="weights", kind="bayesian", space=[], points=None, fixed={})
    on_point = {"model.window": 8, "optim.lr": 0.01 * (1 + 1e-12)}
    off_point = {"model.window": 8, "optim.lr": 0.02}
    fewer_params = {"model.window": 8}
    assert round_owns(design, on_point, points) and not round_owns(bayes, on_point, points)
    assert not round_owns(design, off_point, points) and round_owns(bayes, off_point, points)
    assert not round_owns(design, fewer_params, points) and round_owns(bayes, fewer_params, points)
    assert round_owns(bayes, on_point, [])  # a Bayesian round alone owns every trial


def test_a_round_may_have_its_design_points_or_the_swarm_max_trials(tmp_path):
    s = settings(tmp_path, max_trials=7)
    bayes = RoundPlan(name="weights", kind="bayesian", space=[], points=None, fixed={})
    design = bayes.model_copy(update={"kind": "points", "points": [{"seed": 0}, {"seed": 1}]})
    assert round_size(bayes, s) == 7 and round_size(design, s) == 2


def test_finite_means_a_real_finite_number():
    assert finite(0.5) and finite(3)
    for v in (float("nan"), float("inf"), True, None, "1"):
        assert not finite(v), v


def test_last_value_is_the_latest_epoch_with_a_finite_value():
    curve = _curve({1: 0.05, 2: 0.02, 3: float("nan")})
    assert last_value(curve) == 0.02
    assert last_value({}) is None


def test_job_hours_count_wall_hours_from_start_to_end_or_now():
    def job(started, ended):
        return Job("j", "1", 1, JobState.RUNNING, created=0.0, started=started, ended=ended)

    assert job_hours(job(1_000.0, 4_600.0), now=99_999.0) == 1.0  # ended: until its end
    assert job_hours(job(1_000.0, None), now=2_800.0) == 0.5  # running: until now
    assert job_hours(job(1_000.0, None), now=500.0) == 0.0  # a clock behind the start counts 0
    assert job_hours(job(None, None), now=2_800.0) == 0.0  # not started


def test_the_decision_table_of_the_controller_docstring():
    A, done = TunerState.ACTIVE, TunerState.COMPLETED
    assert decide(done, True, False, JobState.RUNNING) is Step.CANCEL_JOB
    assert decide(done, True, True, JobState.SUCCEEDED) is Step.LEAVE
    assert decide(done, False, False, None) is Step.LEAVE
    assert decide(A, False, True, JobState.RUNNING) is Step.LEAVE  # another round's trial
    assert decide(A, True, True, JobState.RUNNING) is Step.STOP
    assert decide(A, True, True, None) is Step.STOP
    assert decide(A, True, False, None) is Step.LAUNCH
    assert decide(A, True, False, JobState.QUEUED) is Step.RELAUNCH
    assert decide(A, True, False, JobState.RUNNING) is Step.WATCH
    assert decide(A, True, False, JobState.SUCCEEDED) is Step.COLLECT
    assert decide(A, True, False, JobState.FAILED) is Step.RETRY
    assert decide(A, True, False, JobState.CANCELLED) is Step.RETRY


def test_final_json_verdicts():
    assert judge_final(None) is Outcome.REDERIVE
    assert judge_final({"status": 3}) is Outcome.REDERIVE
    assert judge_final({"status": "completed", "extrapolation_error": 0.1}) is Outcome.COMPLETED
    assert judge_final({"status": "completed", "extrapolation_error": float("nan")}) is Outcome.UNEXPECTED
    assert judge_final({"status": "diverged"}) is Outcome.DIVERGED
    assert judge_final({"status": "running"}) is Outcome.UNEXPECTED


def _attempt(n: int, state: JobState, code: int | None) -> Job:
    return Job(job_id=f"j{n}", trial_id="0", attempt=n, state=state, created=0.0, exit_code=code)


def test_retries_count_failures_but_not_rederivations_or_the_environment():
    failed = [_attempt(i, JobState.FAILED, 1) for i in (1, 2, 3)]
    assert retry_verdict(failed[0], failed[:1], max_retries=2) is Retry.AGAIN
    assert retry_verdict(failed[2], failed[:3], max_retries=2) is Retry.GIVE_UP
    assert retry_verdict(failed[1], failed[:2], max_retries=2) is Retry.AGAIN
    refused = _attempt(1, JobState.FAILED, EXIT_BAD_INPUT)
    assert retry_verdict(refused, [refused], max_retries=5) is Retry.REFUSED
    env = [_attempt(i, JobState.FAILED, EXIT_ENVIRONMENT) for i in range(1, 6)]
    assert retry_verdict(env[-1], env, max_retries=0) is Retry.AGAIN  # 5 free attempts
    env.append(_attempt(6, JobState.FAILED, EXIT_ENVIRONMENT))
    assert retry_verdict(env[-1], env, max_retries=0) is Retry.GIVE_UP


def _paired(e: int, diff: float, se: float) -> dict:
    return {"epoch": e, "val_paired_diff": diff, "val_paired_stderr": se, "val_best_baseline": "baseline_x"}


def test_the_baseline_rule_judges_the_first_epoch_past_its_fraction_only():
    rule = BaselineSigmaRule(at_fraction=0.35, sigmas=1.0)
    curve = {1: _paired(1, 0.5, 0.1), 4: _paired(4, -0.05, 0.1), 5: _paired(5, -0.5, 0.1)}
    reason = baseline_rule(rule, curve, epochs=10)
    assert reason and "epoch 4/10" in reason and "baseline_x" in reason
    assert baseline_rule(rule, {4: _paired(4, -0.25, 0.1)}, epochs=10) is None  # 2.5 sigma below
    assert baseline_rule(rule, {10: _paired(10, 1.0, 0.1)}, epochs=10) is None  # the last epoch: done
    assert baseline_rule(BaselineSigmaRule(enabled=False), curve, epochs=10) is None


def test_the_median_rule_compares_best_values_with_peers_that_reached_the_epoch():
    rule = MedianRule(warmup_fraction=0.3, min_trials=2)
    mine = _curve({3: 0.05, 4: 0.04})
    peers = [_curve({3: 0.02, 4: 0.03}), _curve({4: 0.01}), _curve({3: 0.01})]  # the last is behind
    assert "best 0.04 is worse than the median 0.015 of 2 trials" in median_rule(rule, mine, peers, epochs=10)
    assert median_rule(rule, mine, peers[:1], epochs=10) is None  # too few peers
    assert median_rule(rule, _curve({4: 0.015}), peers, epochs=10) is None  # not worse than the median
    assert median_rule(rule, _curve({2: 0.9}), peers, epochs=10) is None  # before the warm-up
