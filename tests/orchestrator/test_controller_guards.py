"""Two guards whose loss the broader controller tests would not notice: the budget reserves the
estimated cost of every running trial before it starts another, and the median rule compares each
trial's best value so far (the lowest error up to an epoch, not the highest)."""

from __future__ import annotations

import shutil

from orchestrator.controller import Controller, RoundSpec, _best_upto
from swarm_helpers import FAKE_TRAINER, FakeClock, settings

from orchestrator import backends


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
    tuner = backends.make_tuner(s, s.rounds[0].params())
    runner = backends.make_runner(s, FAKE_TRAINER)
    events: list[dict] = []
    ctl = Controller(
        s,
        tuner,
        runner,
        backends.make_output_reader(s),
        lambda i: backends.trial_output_dir(s, i),
        clock,
        clock.sleep,
        on_event=events.append,
    )
    rnd = RoundSpec("weights", None, s.max_trials)
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
    assert _best_upto(curve, 1) == 0.05
    assert _best_upto(curve, 3) == 0.02  # not the worst (0.05), not a later epoch's 0.01
    assert _best_upto(curve, 9) == 0.01
    assert _best_upto(curve, 0) is None
