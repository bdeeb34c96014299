"""Unfolding of zeta zeros: Riemann–Siegel theta, the smooth counting function and its inverse.

Definitions follow MATH.md §1.1 and §3: N̄(t) = theta(t)/pi + 1, x_n = N̄(gamma_n), spacings
s_n = x_{n+1} - x_n (mean 1) and fluctuations delta_n = x_n - (n - 1/2). Everything is vectorised
float64 numpy; the trainer reuses it for features, baselines and metrics.
"""

from __future__ import annotations

import math

import numpy as np

# Below this height the asymptotic series is no longer float64-exact (MATH.md §1.1: K=5 gives
# |error| <= 2.1e-14 for t >= 10), so smaller t go through mpmath.
_SERIES_MIN_T = 10.0

# (1 - 2^(1-2k)) |B_2k| / (4k(2k-1)) for k = 1..5, the coefficients of t^-(2k-1) (MATH.md §1.1).
_THETA_SERIES = (1 / 48, 7 / 5760, 31 / 80640, 127 / 430080, 511 / 1216512)

_LOG_2PI = math.log(2 * math.pi)


def _theta_series(t: np.ndarray) -> np.ndarray:
    inv = 1.0 / t
    inv2 = inv * inv
    tail = np.zeros_like(t)
    for c in reversed(_THETA_SERIES):
        tail = tail * inv2 + c
    return 0.5 * t * (np.log(t) - _LOG_2PI) - 0.5 * t - math.pi / 8 + tail * inv


def theta(t) -> np.ndarray:
    """Riemann–Siegel theta function theta(t) = arg Gamma(1/4 + it/2) - (t/2) log pi.

    Args:
        t: heights on the critical line (array-like, float64). Values below 10 are computed
            with mpmath (slow, exact); the rest with the K=5 Stirling series (float64-exact).

    Returns:
        float64 ndarray of the same shape as t.
    """
    t = np.asarray(t, dtype=np.float64)
    out = np.empty_like(t)
    big = t >= _SERIES_MIN_T
    out[big] = _theta_series(t[big])
    if not big.all():
        import mpmath

        small = ~big
        out[small] = [float(mpmath.siegeltheta(v)) for v in t[small]]
    return out


def theta_prime(t) -> np.ndarray:
    """Derivative of theta: 1/2 log(t/2pi) - 1/(48 t^2) + O(t^-4), for t >= 10 (float64 ndarray)."""
    t = np.asarray(t, dtype=np.float64)
    return 0.5 * (np.log(t) - _LOG_2PI) - 1.0 / (48.0 * t * t) - 7.0 / (1920.0 * t**4)


def smooth_count(t) -> np.ndarray:
    """Smooth zero counting function N̄(t) = theta(t)/pi + 1 (MATH.md §3).

    Args:
        t: heights (array-like, float64).

    Returns:
        float64 ndarray; N̄(gamma_n) is close to n - 1/2.
    """
    return theta(t) / math.pi + 1.0


def inverse_smooth_count(x, *, tol: float = 1e-12, max_iter: int = 50) -> np.ndarray:
    """Heights t with N̄(t) = x, by vectorised Newton from the Lambert-W estimate.

    Args:
        x: unfolded positions (array-like, float64), each >= N̄(10) ~ 0.0226, where N̄ is
            increasing and the theta series is exact.
        tol: relative tolerance on the Newton step (default 1e-12).
        max_iter: iteration cap (default 50; about 4 are needed).

    Returns:
        float64 ndarray of heights t >= 10.

    Raises:
        ValueError: if some x is below N̄(10) or not finite.
    """
    from scipy.special import lambertw

    x = np.asarray(x, dtype=np.float64)
    lowest = float(smooth_count(_SERIES_MIN_T))
    if not np.all(np.isfinite(x)) or np.any(x < lowest):
        raise ValueError(f"inverse_smooth_count: x must be finite and >= {lowest:.6f} (N̄ at t = 10)")
    # N̄(t) ~ (t/2pi) log(t/2pi e) + 7/8  =>  t ~ 2pi e exp(W((x - 7/8)/e)).
    w = lambertw(np.maximum(x - 7 / 8, -1 / math.e + 1e-12) / math.e).real
    t = np.maximum(2 * math.pi * math.e * np.exp(w), _SERIES_MIN_T)
    for _ in range(max_iter):
        step = (smooth_count(t) - x) * math.pi / theta_prime(t)
        t = np.maximum(t - step, _SERIES_MIN_T)
        if np.all(np.abs(step) <= tol * t):
            break
    return t


def unfold(gamma) -> np.ndarray:
    """Unfolded zeros x_n = N̄(gamma_n) (float64 ndarray, mean spacing 1)."""
    return smooth_count(gamma)


def spacings(x) -> np.ndarray:
    """Unfolded spacings s_n = x_{n+1} - x_n (length len(x) - 1)."""
    return np.diff(np.asarray(x, dtype=np.float64))


def fluctuations(x, first_index: int) -> np.ndarray:
    """Fluctuations delta_n = x_n - (n - 1/2) for n = first_index, first_index + 1, ...

    Args:
        x: unfolded zeros (array-like, float64).
        first_index: 1-based index n of x[0].
    """
    x = np.asarray(x, dtype=np.float64)
    n = np.arange(first_index, first_index + x.size, dtype=np.float64)
    return x - (n - 0.5)
