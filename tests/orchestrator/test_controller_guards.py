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
    EarlyStopping,
    MedianRule,
    baseline_rule,
    best_upto,
    finite,
    last_value,
    median_due,
    median_rule,
)
from orchestrator.round_plan import RoundPlan
from orchestrator.run_files import job_hours
from orchestrator.runners.base import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, Job, JobState
from orchestrator.tuners.base import TunerState, TunerTrial
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


def test_the_baseline_rule_judges_at_exactly_its_fraction_and_needs_a_strictly_negative_bound():
    rule = BaselineSigmaRule(at_fraction=0.35, sigmas=1.0)
    # 0.35 x 20 epochs = epoch 7 exactly: that epoch is judged, not the next one.
    curve = {7: _paired(7, 0.5, 0.1), 8: _paired(8, -0.5, 0.1)}
    assert baseline_rule(rule, curve, epochs=20).startswith("early stop at epoch 7/20")
    # diff + 1 sigma == 0: not below 0, so the trial stops.
    assert baseline_rule(rule, {7: _paired(7, -0.25, 0.25)}, epochs=20) is not None
    # Without a finite standard error there is no verdict, whatever the difference.
    assert baseline_rule(rule, {7: _paired(7, 0.5, float("nan"))}, epochs=20) is None


def test_the_baseline_rule_names_the_best_val_baseline_or_says_it_does_not_know():
    rule = BaselineSigmaRule(at_fraction=0.35, sigmas=1.0)
    row = {"epoch": 7, "val_paired_diff": 0.5, "val_paired_stderr": 0.1}
    named = {**row, "val_baseline_smoothed": 0.002, "val_baseline_index": 0.1, "baseline_ar": 0.0001}
    assert "the best baseline (baseline_smoothed)" in baseline_rule(rule, {7: named}, epochs=20)
    assert "the best baseline (?)" in baseline_rule(rule, {7: row}, epochs=20)


def test_the_median_rule_is_due_from_its_warmup_until_the_last_epoch_when_enabled():
    rule = MedianRule(warmup_fraction=0.3, min_trials=1)
    curve = lambda last: {e: {"epoch": e} for e in range(1, last + 1)}  # noqa: E731
    assert not median_due(rule, curve(2), epochs=10)  # before 30% of 10 epochs
    assert median_due(rule, curve(3), epochs=10)  # at 30% exactly
    assert median_due(rule, curve(9), epochs=10)
    assert not median_due(rule, curve(10), epochs=10)  # the last epoch: the trial is done
    assert not median_due(rule, {}, epochs=10)
    assert not median_due(MedianRule(enabled=False, warmup_fraction=0.3), curve(5), epochs=10)


def test_a_failed_baseline_rule_stops_the_trial_even_when_the_median_rule_is_due(tmp_path):
    rules = EarlyStopping(baseline_sigma=BaselineSigmaRule(), median=MedianRule(warmup_fraction=0.3))
    s = settings(tmp_path, early_stopping=rules)  # smoke: 2 epochs a trial
    ctl, _, _ = local_controller(s, FakeClock(start=0.0))
    trial = TunerTrial("0", {}, TunerState.ACTIVE)
    bad = {1: {**_paired(1, 0.5, 0.1), "val_extrapolation_error": 0.5}}
    # The median rule is due at epoch 1 but has no peers; the baseline rule's verdict stands.
    assert ctl.early_stop_reason(trial, bad, peers=[]).startswith("early stop at epoch 1/2")


def test_a_point_is_the_same_by_value_within_tolerance_and_strings_by_equality():
    design = RoundPlan(name="d", kind="points", space=[], points=[{"k": "cosine", "w": 0.0}], fixed={})
    assert round_owns(design, {"k": "cosine", "w": 1e-16}, [])  # a zero perturbed by rounding
    assert not round_owns(design, {"k": "none", "w": 0.0}, [])
    assert not round_owns(design, {"k": "cosine", "w": 1e-6}, [])
    ints = RoundPlan(name="i", kind="points", space=[], points=[{"k": 5}], fixed={})
    assert not round_owns(ints, {"k": "5"}, [])  # a string is never a number's point


def test_the_gpu_hours_count_every_job_on_its_own_team_machine(tmp_path):
    s = settings(tmp_path)
    machines = dict(s.team_machines)
    machines["fullbatch"] = machines["fullbatch"].model_copy(update={"accelerator_count": 2})
    s = s.model_copy(update={"team_machines": machines})
    ctl, _, _ = local_controller(s, FakeClock(start=10_000.0))
    full = TunerTrial("0", {"train.mode": "fullbatch"}, TunerState.COMPLETED)
    mini = TunerTrial("1", {"loss.gue_nll_weight": 0.1}, TunerState.ACTIVE)
    jobs = [
        Job("a", "0", 1, JobState.SUCCEEDED, created=0.0, started=0.0, ended=3_600.0),  # 1 h x 2 GPUs
        Job("b", "1", 1, JobState.RUNNING, created=0.0, started=8_200.0),  # 0.5 h so far x 1 GPU
        Job(
            "c", "9", 1, JobState.FAILED, created=0.0, started=0.0, ended=3_600.0
        ),  # no trial: the swarm's team
    ]
    assert ctl.gpu_hours(jobs, {"0": full, "1": mini}) == 3.5


def test_the_trial_hours_estimate_is_the_mean_of_the_succeeded_jobs_else_the_profile(tmp_path):
    s = settings(tmp_path, trial_hours_estimate=0.25)
    ctl, _, _ = local_controller(s, FakeClock(start=0.0))
    jobs = [
        Job("a", "0", 1, JobState.SUCCEEDED, created=0.0, started=1_000.0, ended=4_600.0),  # 1 h
        Job("b", "1", 1, JobState.SUCCEEDED, created=0.0, started=1_000.0, ended=8_200.0),  # 2 h
        Job("c", "2", 1, JobState.FAILED, created=0.0, started=1_000.0, ended=37_000.0),
        Job("d", "3", 1, JobState.RUNNING, created=0.0, started=1_000.0),
        Job("e", "4", 1, JobState.SUCCEEDED, created=0.0, started=None, ended=9_000.0),
    ]
    assert ctl.trial_hours_estimate(jobs) == 1.5
    assert ctl.trial_hours_estimate(jobs[2:]) == 0.25


def test_free_attempts_are_the_ones_that_do_not_count_against_the_retries():
    counted = [_attempt(i, JobState.FAILED, 1) for i in range(1, 5)]
    free = [_attempt(i, JobState.FAILED, EXIT_ENVIRONMENT) for i in (5, 6)]
    assert retry_verdict(free[-1], counted + free, max_retries=10) is Retry.AGAIN
