"""The paired interval, Student's t quantile and the rg_penalty verdict, checked against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from orchestrator.report.stats import (
    INCONCLUSIVE,
    SCENARIO_A,
    SCENARIO_B,
    paired_effect,
    rg_verdict,
    t_cdf,
    t_quantile,
)
from orchestrator.trial_outputs import paired_difference
from scipy import stats as sps


@pytest.mark.parametrize("df", [1, 2, 3.7, 5, 12.4, 60, 1000])
@pytest.mark.parametrize("p", [0.001, 0.025, 0.3, 0.5, 0.9, 0.975, 0.999])
def test_t_quantile_and_cdf_match_scipy(df, p):
    assert t_quantile(p, df) == pytest.approx(sps.t.ppf(p, df), rel=1e-9, abs=1e-10)
    assert t_cdf(1.7, df) == pytest.approx(sps.t.cdf(1.7, df), rel=1e-10)


def _arm(rng, hard, mean, seeds):
    return [
        {
            "start": list(range(hard.size)),
            "model": (mean * hard * (1 + 0.05 * rng.standard_normal(hard.size))).tolist(),
        }
        for _ in range(seeds)
    ]


def test_the_paired_interval_matches_scipy_on_seed_averaged_windows():
    rng = np.random.default_rng(3)
    hard = np.exp(0.4 * rng.standard_normal(40))  # shared by both arms: what pairing removes
    a, b = _arm(rng, hard, 0.040, 3), _arm(rng, hard, 0.041, 2)
    diff, se, n = paired_difference(a, b)
    eff = paired_effect(diff, se, n, level=0.9, seeds_a=3, seeds_b=2)
    d = np.mean([s["model"] for s in a], axis=0) - np.mean([s["model"] for s in b], axis=0)
    ref = sps.ttest_1samp(d, 0.0).confidence_interval(0.9)
    assert eff.diff == pytest.approx(d.mean(), rel=1e-12) and eff.windows == 40 and eff.df == 39
    assert (eff.lo, eff.hi) == pytest.approx((ref.low, ref.high), rel=1e-9)
    # Unpaired, the windows' spread would hide the 0.001 difference.
    welch = sps.ttest_ind(np.mean([s["model"] for s in a], axis=0), np.mean([s["model"] for s in b], axis=0))
    assert welch.confidence_interval(0.9).high > 0 > eff.hi


def _effect(diff, half_width, windows=32):
    se = half_width / t_quantile(0.975, windows - 1)
    return paired_effect(diff, se, windows)


def test_clear_b_rg_lowers_error():
    v = rg_verdict(_effect(-0.02, 0.004), margin=0.006)
    assert v.scenario == SCENARIO_B
    assert v.effect.hi < 0
    assert "lowers" in v.text and "Scenario B" in v.text and "paired over 32 test windows" in v.text


def test_clear_b_rg_raises_error():
    v = rg_verdict(_effect(0.02, 0.004), margin=0.005)
    assert v.scenario == SCENARIO_B and v.effect.lo > 0 and "raises" in v.text


def test_clear_a_no_measurable_effect():
    v = rg_verdict(_effect(0.0002, 0.001), margin=0.005)  # [-0.0008, 0.0012] inside ±0.005
    assert v.scenario == SCENARIO_A
    assert -0.005 < v.effect.lo < 0 < v.effect.hi < 0.005
    assert "nothing measurable" in v.text


def test_inconclusive_when_wide_interval_straddles_zero():
    v = rg_verdict(_effect(0.001, 0.02), margin=0.005)
    assert v.scenario == INCONCLUSIVE
    assert v.effect.lo < -0.005 and v.effect.hi > 0.005
    assert "more seeds or test windows" in v.text


def test_the_interval_needs_two_windows_and_the_verdict_a_positive_margin():
    with pytest.raises(ValueError, match="at least 2 windows"):
        paired_effect(-0.001, 0.001, 1)
    with pytest.raises(ValueError, match="margin"):
        rg_verdict(_effect(0.01, 0.001), margin=0.0)
