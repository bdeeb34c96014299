"""Welch's interval, Student's t quantile and the rg_penalty verdict, checked against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from orchestrator.report.stats import (
    INCONCLUSIVE,
    SCENARIO_A,
    SCENARIO_B,
    mean_ci,
    rg_verdict,
    t_cdf,
    t_quantile,
    welch,
)
from scipy import stats as sps


@pytest.mark.parametrize("df", [1, 2, 3.7, 5, 12.4, 60, 1000])
@pytest.mark.parametrize("p", [0.001, 0.025, 0.3, 0.5, 0.9, 0.975, 0.999])
def test_t_quantile_and_cdf_match_scipy(df, p):
    assert t_quantile(p, df) == pytest.approx(sps.t.ppf(p, df), rel=1e-9, abs=1e-10)
    assert t_cdf(1.7, df) == pytest.approx(sps.t.cdf(1.7, df), rel=1e-10)


def test_welch_matches_scipy():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.04, 0.002, 5), rng.normal(0.05, 0.006, 4)
    eff = welch(list(a), list(b), level=0.9)
    ref = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.9)
    assert eff.diff == pytest.approx(a.mean() - b.mean(), rel=1e-12)
    assert (eff.lo, eff.hi) == pytest.approx((ref.low, ref.high), rel=1e-9)
    assert eff.n_a == 5 and eff.n_b == 4


def test_mean_ci_matches_scipy():
    xs = [0.031, 0.029, 0.034, 0.030]
    ci = mean_ci(xs)
    lo, hi = sps.t.interval(0.95, 3, loc=np.mean(xs), scale=sps.sem(xs))
    assert (ci.lo, ci.hi) == pytest.approx((lo, hi), rel=1e-9)
    assert ci.stderr == pytest.approx(sps.sem(xs), rel=1e-12)
    single = mean_ci([0.5])
    assert single.mean == 0.5 and math.isnan(single.stderr)


def test_clear_b_rg_lowers_error():
    v = rg_verdict([0.040, 0.039, 0.041, 0.040], [0.060, 0.061, 0.059, 0.062], margin=0.006)
    assert v.scenario == SCENARIO_B
    assert v.effect.hi < 0
    assert "lowers" in v.text and "Scenario B" in v.text


def test_clear_b_rg_raises_error():
    v = rg_verdict([0.070, 0.071, 0.069], [0.050, 0.052, 0.051], margin=0.005)
    assert v.scenario == SCENARIO_B and v.effect.lo > 0 and "raises" in v.text


def test_clear_a_no_measurable_effect():
    # Tight seeds, means 0.0002 apart, margin 0.005: the interval sits inside (-margin, margin).
    v = rg_verdict(
        [0.0500, 0.0503, 0.0498, 0.0501, 0.0502], [0.0499, 0.0502, 0.0500, 0.0497, 0.0501], margin=0.005
    )
    assert v.scenario == SCENARIO_A
    assert -0.005 < v.effect.lo < 0 < v.effect.hi < 0.005
    assert "nothing measurable" in v.text


def test_inconclusive_when_wide_interval_straddles_zero():
    v = rg_verdict([0.03, 0.07, 0.05], [0.06, 0.02, 0.045], margin=0.005)
    assert v.scenario == INCONCLUSIVE
    assert v.effect.lo < -0.005 and v.effect.hi > 0.005
    assert "more seeds" in v.text


def test_verdict_needs_two_seeds_and_a_positive_margin():
    with pytest.raises(ValueError, match="at least 2"):
        rg_verdict([0.04], [0.05, 0.06], margin=0.01)
    with pytest.raises(ValueError, match="margin"):
        rg_verdict([0.04, 0.05], [0.05, 0.06], margin=0.0)
