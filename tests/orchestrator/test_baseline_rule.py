"""One paired rule for "beats the baseline" (orchestrator.trial_outputs.vs_baseline, docs/contracts.md
"Paired verdict"): trials.json, the live log, the leaderboard, `status` and the report judge the mean
per-window difference model - best baseline against 2 paired standard errors; seeds on the same
windows are averaged per window first, never judged by their spread alone."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from orchestrator.leaderboard import format_leaderboard, format_status, rank
from orchestrator.report.load import Trial
from orchestrator.trial_outputs import (
    BEATS,
    TEST,
    WITHIN_NOISE,
    WORSE,
    WindowMismatch,
    best_baseline,
    best_baseline_name,
    final_metrics,
    holm,
    one_sided_p,
    paired_difference,
    paired_over_seeds,
    pooled_paired,
    trial_vs_baseline,
    vs_baseline,
)

FIVE = {
    "baseline_index": 0.111,
    "baseline_ar": 0.066,
    "baseline_explicit": 0.014,
    "baseline_smoothed": 0.0128,
    "baseline_smoothed_ar": 0.0125,
}


@pytest.mark.parametrize(
    ("diff", "stderr", "expected"),
    [
        (-0.003, 0.001, BEATS),  # -0.003 + 0.002 < 0
        (-0.0025, 0.0013, WITHIN_NOISE),  # below, but -0.0025 + 0.0026 >= 0
        (-0.001, None, BEATS),  # no stderr: the point estimate decides
        (-0.001, math.nan, BEATS),
        (0.0, 0.0, WORSE),  # equal is not below
        (0.007, 0.001, WORSE),
        (None, 0.001, None),
    ],
)
def test_three_outcomes(diff, stderr, expected):
    assert vs_baseline(diff, stderr) == expected
    assert trial_vs_baseline({"paired_diff": diff, "paired_stderr": stderr}) == expected
    assert trial_vs_baseline({"test_paired_diff": diff, "test_paired_stderr": stderr}, TEST) == expected


def test_the_best_baseline_is_the_smallest_of_every_baseline_key_of_the_set():
    row = {**FIVE, "test_baseline_smoothed": 0.0011, "test_baseline_ar": 0.05, "best_baseline": "x"}
    assert best_baseline_name(row) == "baseline_smoothed_ar" and best_baseline(row) == 0.0125
    assert best_baseline_name(row, TEST) == "baseline_smoothed" and best_baseline(row, TEST) == 0.0011
    # A baseline nobody downstream has heard of counts as soon as the trainer writes it.
    assert best_baseline_name({**FIVE, "baseline_new": 0.001}) == "baseline_new"
    assert best_baseline({"extrapolation_error": 0.01}) is None


def test_final_metrics_keep_tune_and_test_figures_of_every_baseline():
    final = {
        "status": "completed",
        "extrapolation_error": 0.012,
        "extrapolation_stderr": 0.001,
        "paired_diff": -0.0005,
        "paired_stderr": 0.0002,
        **FIVE,
        "best_baseline": "baseline_smoothed_ar",
        **{f"test_{k}": v for k, v in FIVE.items()},
        "test_extrapolation_error": 0.013,
        "val_extrapolation_error": 0.02,
        "windows": {"tune": {"start": [1], "model": [0.01]}},
        "epochs_done": 3,
    }
    m = final_metrics(final)
    assert m["test_baseline_smoothed_ar"] == 0.0125 and m["baseline_smoothed"] == 0.0128
    assert m["paired_diff"] == -0.0005 and m["test_extrapolation_error"] == 0.013
    assert "extrapolation_error" not in m and "val_extrapolation_error" not in m  # objective; per epoch
    assert all(isinstance(v, float) for v in m.values())  # Vizier stores numbers only


def _windows(model: list[float], base: list[float], extra: float = 0.1) -> dict:
    return {
        "start": list(range(1000, 1000 + 200 * len(model), 200)),
        "model": model,
        "baseline_smoothed": base,
        "baseline_index": [extra] * len(model),
    }


def _seeds_close_to_the_baseline():
    """The issue's case: two seeds at 0.01060 and 0.01062 against a best baseline of 0.01081 on 64
    shared windows whose s.e. (window noise) is 0.0009; the seeds agree window by window."""
    rng = random.Random(7)
    w = 64
    base = [0.01081 * math.exp(0.6 * rng.gauss(0, 1)) for _ in range(w)]
    shift = 0.01081 - statistics.fmean(base)
    base = [b + shift for b in base]
    own = [0.002 * rng.gauss(0, 1) for _ in range(w)]  # the model's own error on each window
    seeds = []
    for target in (0.01060, 0.01062):
        m = [b + e for b, e in zip(base, own, strict=True)]
        m = [x + target - statistics.fmean(m) for x in m]
        seeds.append(_windows(m, base))
    return seeds, base


def test_two_close_seeds_are_not_a_win_against_window_noise():
    seeds, base = _seeds_close_to_the_baseline()
    assert statistics.stdev(base) / math.sqrt(len(base)) == pytest.approx(0.0009, rel=0.35)
    values = [statistics.fmean(s["model"]) for s in seeds]
    assert values == pytest.approx([0.01060, 0.01062])
    # The old pooling (seed spread alone, unpaired) called this a win with s.e. 1e-5:
    old_se = statistics.stdev(values) / math.sqrt(2)
    assert statistics.fmean(values) + 2 * old_se < 0.01081 and old_se == pytest.approx(1e-5)
    p = paired_over_seeds(seeds)
    assert p.baseline == "baseline_smoothed" and p.seeds == 2 and p.windows == 64
    assert p.diff == pytest.approx(-0.00020, abs=1e-8)
    assert p.stderr > 1e-4 and p.outcome == WITHIN_NOISE


def test_pairing_finds_a_win_that_the_unpaired_rule_hides():
    rng = random.Random(3)
    base = [0.01081 * math.exp(0.6 * rng.gauss(0, 1)) for _ in range(64)]
    model = [b - 0.0003 + 0.0003 * rng.gauss(0, 1) for b in base]
    unpaired_se = statistics.stdev(model) / math.sqrt(64)
    assert statistics.fmean(model) + 2 * unpaired_se > statistics.fmean(base)  # the old rule: no win
    p = paired_over_seeds([_windows(model, base)])
    assert p.outcome == BEATS and p.diff + 2 * p.stderr < 0


def test_seeds_are_averaged_per_window_before_pairing():
    base = [0.010, 0.020, 0.030, 0.040]
    a = _windows([0.012, 0.018, 0.031, 0.037], base)
    b = _windows([0.008, 0.020, 0.027, 0.041], base)
    p = paired_over_seeds([a, b])
    d = [(x + y) / 2 - z for x, y, z in zip(a["model"], b["model"], base, strict=True)]
    assert p.diff == pytest.approx(statistics.fmean(d))
    assert p.stderr == pytest.approx(statistics.stdev(d) / 2)
    diff, se, n = paired_difference([a], [b])
    assert n == 4 and diff == pytest.approx(statistics.fmean([0.004, -0.002, 0.004, -0.004]))
    moved = {**b, "start": [1, 2, 3, 4]}
    with pytest.raises(WindowMismatch):
        paired_over_seeds([a, moved])
    with pytest.raises(WindowMismatch):
        paired_difference([a], [moved])


def test_without_window_arrays_the_pool_uses_the_seeds_paired_figures():
    finals = [
        {**FIVE, "extrapolation_error": 0.0121, "paired_diff": -0.0004, "paired_stderr": 0.0003},
        {**FIVE, "extrapolation_error": 0.0123, "paired_diff": -0.0002, "paired_stderr": 0.0001},
    ]
    p = pooled_paired(finals, [None, None])
    assert p.diff == pytest.approx(-0.0003) and p.stderr == pytest.approx(0.0002)  # an upper bound
    assert p.windows is None and p.baseline == "baseline_smoothed_ar" and p.outcome == WITHIN_NOISE
    assert pooled_paired([finals[0], {**FIVE, "extrapolation_error": 0.01}], [None, None]) is None


def test_holm_adjusts_over_the_candidates():
    assert holm([0.01, 0.04, 0.03], 0.05) == [True, False, False]  # 0.01 <= 0.05/3; 0.03 > 0.05/2
    assert holm([0.01, 0.02, 0.04], 0.05) == [True, True, True]
    assert holm([], 0.05) == []
    assert one_sided_p(-0.0002, 0.0001) == pytest.approx(0.02275, abs=1e-5)
    assert one_sided_p(0.001, 0.0) == 1.0 and one_sided_p(-0.001, 0.0) == 0.0


def _snap(diff: float, stderr: float, value: float = 0.0118) -> dict:
    metrics = {**FIVE, "extrapolation_stderr": 0.0009, "paired_diff": diff, "paired_stderr": stderr}
    trial = {"id": "1", "state": "COMPLETED", "params": {"loss.gue_nll_weight": 0.1}, "value": value}
    trial |= {"stderr": 0.0009, "metrics": metrics, "vs_baseline": trial_vs_baseline(metrics)}
    return {
        "study": "s",
        "phase": 2,
        "team": "minibatch",
        "backend": "local",
        "baselines": FIVE,
        "trials": [trial],
    }


def test_the_leaderboard_status_and_report_agree_on_a_trial_within_noise():
    snap = _snap(-0.0007, 0.0005)  # below the best baseline, by less than 2 paired s.e.
    row = rank(snap)[0]
    assert row["vs_baseline"] == WITHIN_NOISE and row["beats_baseline"] is False
    assert row["best_baseline_name"] == "baseline_smoothed_ar" and row["best_baseline"] == 0.0125
    board = format_leaderboard(snap)
    assert "within noise" in board and "No trial beats the best baseline" in board
    assert "-0.00070 ± 0.00050" in board and "smoothed + AR 0.01250" in board
    status = format_status(snap, now=0)
    assert "is within noise of the best baseline smoothed + AR 0.01250" in status
    final = {"extrapolation_error": 0.0118, **snap["trials"][0]["metrics"]}
    report_trial = Trial("1", "COMPLETED", {}, "/x", final=final)
    assert report_trial.vs_baseline("") == WITHIN_NOISE


def test_a_clear_win_is_a_win_everywhere():
    snap = _snap(-0.0007, 0.0002)
    assert rank(snap)[0]["beats_baseline"] is True
    assert "No trial beats" not in format_leaderboard(snap)
    assert "beats the best baseline" in format_status(snap, now=0)


def test_pooled_seeds_in_the_leaderboard_are_paired_not_judged_by_their_spread():
    seeds, _ = _seeds_close_to_the_baseline()
    trials = []
    for i, w in enumerate(seeds):
        p = paired_over_seeds([w])
        metrics = {
            "baseline_smoothed": p.baseline_error,
            "baseline_index": 0.1,
            "extrapolation_stderr": 0.0009,
            "paired_diff": p.diff,
            "paired_stderr": p.stderr,
        }
        trials.append(
            {
                "id": str(i),
                "state": "COMPLETED",
                "params": {"loss.gue_nll_weight": 0.1, "seed": i},
                "value": p.error,
                "stderr": 0.0009,
                "metrics": metrics,
            }
        )
    snap = {"study": "s", "trials": trials, "baselines": {}}
    for windows in (None, {"0": seeds[0], "1": seeds[1]}):
        row = rank(snap, windows=windows)[0]
        assert row["n"] == 2 and row["vs_baseline"] == WITHIN_NOISE
        assert row["stderr"] == 0.0009  # the windows' s.e., not the seeds' 1e-5
        assert row["paired_stderr"] > 1e-4
    board = format_leaderboard(snap)
    assert "± 0.00000" not in board and "No trial beats the best baseline" in board


def test_the_live_log_uses_the_same_rule(tmp_path):
    from orchestrator.phases import SwarmRun
    from orchestrator.settings_loader import load_settings

    line = SwarmRun(load_settings(2, profile="smoke", run_dir=tmp_path))._event_line
    ev = {
        "time": 0,
        "event": "completed",
        "trial": "1",
        "value": 0.0118,
        "stderr": 0.0013,
        "best_baseline": 0.0125,
        "best_baseline_name": "baseline_smoothed_ar",
        "paired_diff": -0.0007,
        "paired_stderr": 0.0005,
    }
    assert "within noise" in line(ev) and "beats baseline" not in line(ev)
    assert "smoothed_ar 0.01250, paired -0.00070 ± 0.00050" in line(ev)
    assert "beats baseline" in line({**ev, "paired_stderr": 0.0002})
