"""One rule for "beats the baseline" (orchestrator.trial_outputs.vs_baseline): trials.json, the live
log, the leaderboard, `status` and the report all call a trial below the best baseline by less than two
standard errors "within noise", never a win."""

from __future__ import annotations

import math

import pytest
from orchestrator.leaderboard import format_leaderboard, format_status, rank
from orchestrator.report.load import Trial
from orchestrator.trial_outputs import BEATS, WITHIN_NOISE, WORSE, trial_vs_baseline, vs_baseline

BASE = {"baseline_index": 0.05, "baseline_ar": 0.03, "baseline_explicit": 0.013}


@pytest.mark.parametrize(
    ("value", "stderr", "expected"),
    [
        (0.010, 0.001, BEATS),  # 0.010 + 0.002 < 0.013
        (0.0105, 0.0013, WITHIN_NOISE),  # below, but 0.0105 + 0.0026 >= 0.013
        (0.012, None, BEATS),  # no stderr: the point estimate decides
        (0.012, math.nan, BEATS),
        (0.013, 0.0, WORSE),  # equal is not below
        (0.02, 0.001, WORSE),
    ],
)
def test_three_outcomes(value, stderr, expected):
    assert vs_baseline(value, stderr, 0.013) == expected
    assert trial_vs_baseline(value, {**BASE, "extrapolation_stderr": stderr}) == expected


def test_unknown_value_or_baseline_is_none():
    assert vs_baseline(None, 0.001, 0.013) is None
    assert vs_baseline(0.01, 0.001, None) is None
    assert trial_vs_baseline(0.01, {"extrapolation_stderr": 0.001}) is None


def _snap(value: float, stderr: float) -> dict:
    metrics = {**BASE, "extrapolation_stderr": stderr}
    trial = {"id": "1", "state": "COMPLETED", "params": {"loss.gue_nll_weight": 0.1}, "value": value}
    trial |= {"stderr": stderr, "metrics": metrics, "vs_baseline": trial_vs_baseline(value, metrics)}
    return {
        "study": "s",
        "phase": 2,
        "team": "minibatch",
        "backend": "local",
        "baselines": BASE,
        "trials": [trial],
    }


def test_the_leaderboard_status_and_report_agree_on_a_trial_within_noise():
    value, stderr = 0.0105, 0.0013  # below 0.013, by less than 2 stderr
    snap = _snap(value, stderr)
    row = rank(snap)[0]
    assert row["vs_baseline"] == WITHIN_NOISE and row["beats_baseline"] is False
    board = format_leaderboard(snap)
    assert "within noise" in board and "No trial beats the best baseline" in board
    assert "is within noise of the best baseline" in format_status(snap, now=0)
    report_trial = Trial(
        "1", "COMPLETED", {}, "/x", final={"extrapolation_error": value, **snap["trials"][0]["metrics"]}
    )
    assert report_trial.vs_baseline() == WITHIN_NOISE
    assert not report_trial.beats_baselines() and report_trial.below_within_noise()


def test_a_clear_win_is_a_win_everywhere():
    snap = _snap(0.010, 0.001)
    assert rank(snap)[0]["beats_baseline"] is True
    assert "No trial beats" not in format_leaderboard(snap)
    assert "beats the best baseline" in format_status(snap, now=0)
    report_trial = Trial("1", "COMPLETED", {}, "/x", final={"extrapolation_error": 0.010, **BASE})
    assert report_trial.vs_baseline() == BEATS  # without a stderr the point estimate decides


def test_the_live_log_uses_the_same_rule(tmp_path):
    from orchestrator.config import load_settings
    from orchestrator.phases import SwarmRun

    line = SwarmRun(load_settings(2, profile="smoke", run_dir=tmp_path))._event_line
    ev = {
        "time": 0,
        "event": "completed",
        "trial": "1",
        "value": 0.0105,
        "stderr": 0.0013,
        "best_baseline": 0.013,
    }
    assert "within noise" in line(ev) and "beats baseline" not in line(ev)
    assert "beats baseline" in line({**ev, "value": 0.010, "stderr": 0.001})
