"""Statistics for the report: mean ± standard error, Welch's t interval for a difference of means,
and the rg_penalty verdict.

Seeds are few (3 to 10), so a bootstrap over them would understate the uncertainty; Welch's t
interval is exact for normal errors with unequal variances and is what the verdict uses. Student's
t quantile is computed here (regularised incomplete beta by continued fraction, then bisection) so
the orchestrator needs no scipy; tests check it against scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

SCENARIO_A = "A"
SCENARIO_B = "B"
INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class MeanCI:
    """Mean of a sample with its standard error and a two-sided t interval."""

    n: int
    mean: float
    stderr: float  # nan when n < 2
    lo: float  # nan when n < 2
    hi: float


@dataclass(frozen=True)
class Effect:
    """Difference of means a - b with Welch's t interval."""

    diff: float
    stderr: float
    lo: float
    hi: float
    df: float
    level: float
    n_a: int
    n_b: int


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


def _mean_var(xs: Sequence[float]) -> tuple[int, float, float]:
    n = len(xs)
    mean = math.fsum(xs) / n
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1) if n > 1 else math.nan
    return n, mean, var


def mean_ci(xs: Sequence[float], level: float = 0.95) -> MeanCI:
    """Mean, standard error and two-sided Student t interval of a sample.

    Args:
        xs: at least one value.
        level: confidence level of the interval (default 0.95).
    """
    if not xs:
        raise ValueError("mean_ci: empty sample")
    n, mean, var = _mean_var(xs)
    if n < 2:
        return MeanCI(n, mean, math.nan, math.nan, math.nan)
    se = math.sqrt(var / n)
    half = t_quantile(0.5 + level / 2.0, n - 1) * se
    return MeanCI(n, mean, se, mean - half, mean + half)


def welch(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Effect:
    """Difference of means mean(a) - mean(b) with Welch's t interval (unequal variances).

    Args:
        a, b: samples of at least 2 values each (e.g. extrapolation_error over seeds).
        level: confidence level of the interval (default 0.95).
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"welch: need at least 2 values per arm, got {len(a)} and {len(b)}")
    n_a, m_a, v_a = _mean_var(a)
    n_b, m_b, v_b = _mean_var(b)
    q_a, q_b = v_a / n_a, v_b / n_b
    se = math.sqrt(q_a + q_b)
    diff = m_a - m_b
    if se == 0.0:
        return Effect(diff, 0.0, diff, diff, math.inf, level, n_a, n_b)
    df = (q_a + q_b) ** 2 / (q_a**2 / (n_a - 1) + q_b**2 / (n_b - 1))
    half = t_quantile(0.5 + level / 2.0, df) * se
    return Effect(diff, se, diff - half, diff + half, df, level, n_a, n_b)


def rg_verdict(
    with_rg: Sequence[float], without_rg: Sequence[float], margin: float, level: float = 0.95
) -> Verdict:
    """Does rg_penalty change the extrapolation error? Scenario B when the interval excludes zero,
    Scenario A when it lies inside (-margin, +margin), inconclusive otherwise.

    Args:
        with_rg: objective per seed, Team 1 with rg_penalty (lower is better).
        without_rg: objective per seed, Team 1 with rg_penalty_weight 0 (the ablation).
        margin: smallest absolute difference in the objective that would matter (> 0), in the
            objective's units (unfolded spacings squared).
        level: confidence level of Welch's interval (default 0.95).
    """
    if margin <= 0:
        raise ValueError(f"rg_verdict: margin must be > 0, got {margin}")
    eff = welch(with_rg, without_rg, level)
    ci = f"{eff.diff:+.4g} (Welch {level:.0%} CI [{eff.lo:+.4g}, {eff.hi:+.4g}], df {eff.df:.3g})"
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
        f"more seeds are needed.",
    )
