"""Statistics for the report: mean ± standard error, the paired interval of a difference on shared
windows, and the rg_penalty verdict.

Every arm and seed is scored on the same test windows, so differences are paired window by window
(each arm's error averaged over its seeds first, docs/contracts.md); the interval is Student's t
with W - 1 degrees of freedom over the W per-window differences. Student's t quantile is computed
here (regularised incomplete beta by continued fraction, then bisection) so the orchestrator needs
no scipy; tests check it against scipy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCENARIO_A = "A"
SCENARIO_B = "B"
INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Effect:
    """A paired difference a - b over W shared windows, with its t interval (df = W - 1)."""

    diff: float
    stderr: float
    lo: float
    hi: float
    df: float
    level: float
    windows: int
    seeds_a: int
    seeds_b: int


@dataclass(frozen=True)
class Verdict:
    scenario: str  # SCENARIO_A, SCENARIO_B or INCONCLUSIVE
    effect: Effect
    margin: float  # absolute equivalence margin in the objective's units
    text: str  # one sentence for the page


def _betacf(a: float, b: float, x: float) -> float:
    # Lentz's continued fraction for the incomplete beta function (Numerical Recipes 6.4).
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b).

    Args:
        a, b: shape parameters, > 0.
        x: point in [0, 1].
    """
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    # The continued fraction converges fast only for x < (a + 1) / (a + b + 2); use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student's t cumulative distribution function.

    Args:
        t: the statistic.
        df: degrees of freedom, > 0 (need not be an integer: Welch's df is not).
    """
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Inverse of t_cdf: the t with t_cdf(t, df) = p, to 1e-12.

    Args:
        p: probability in (0, 1).
        df: degrees of freedom, > 0.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile: p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def paired_effect(
    diff: float, stderr: float, windows: int, level: float = 0.95, seeds_a: int = 1, seeds_b: int = 1
) -> Effect:
    """The t interval of a mean paired difference over `windows` shared windows.

    Args:
        diff: mean over the windows of (a - b), each arm seed-averaged per window.
        stderr: its paired standard error.
        windows: W, at least 2.
        level: confidence level of the two-sided interval (default 0.95).
        seeds_a, seeds_b: seeds averaged in each arm (for the page).
    """
    if windows < 2:
        raise ValueError(f"paired_effect: need at least 2 windows, got {windows}")
    if stderr == 0.0:
        return Effect(diff, 0.0, diff, diff, windows - 1, level, windows, seeds_a, seeds_b)
    half = t_quantile(0.5 + level / 2.0, windows - 1) * stderr
    return Effect(diff, stderr, diff - half, diff + half, windows - 1, level, windows, seeds_a, seeds_b)


def rg_verdict(eff: Effect, margin: float) -> Verdict:
    """Does rg_penalty change the extrapolation error? Scenario B when the interval excludes zero,
    Scenario A when it lies inside (-margin, +margin), inconclusive otherwise.

    Args:
        eff: with rg_penalty minus without (the ablation), paired over the test windows.
        margin: smallest absolute difference in the objective that would matter (> 0), in the
            objective's units (unfolded spacings squared).
    """
    if margin <= 0:
        raise ValueError(f"rg_verdict: margin must be > 0, got {margin}")
    level = eff.level
    ci = (
        f"{eff.diff:+.4g} (paired over {eff.windows} test windows, {level:.0%} CI "
        f"[{eff.lo:+.4g}, {eff.hi:+.4g}])"
    )
    if eff.lo > 0 or eff.hi < 0:
        direction = "lowers" if eff.hi < 0 else "raises"
        return Verdict(
            SCENARIO_B,
            eff,
            margin,
            f"Scenario B: rg_penalty matters; it {direction} the extrapolation error: with minus without = {ci}.",
        )
    if -margin < eff.lo and eff.hi < margin:
        return Verdict(
            SCENARIO_A,
            eff,
            margin,
            f"Scenario A: rg_penalty adds nothing measurable; the difference {ci} lies within "
            f"±{margin:.4g}, the smallest effect that would matter.",
        )
    return Verdict(
        INCONCLUSIVE,
        eff,
        margin,
        f"Inconclusive: the difference {ci} straddles zero and reaches beyond ±{margin:.4g}; "
        f"more seeds or test windows are needed.",
    )
