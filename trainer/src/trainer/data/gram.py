"""Gram points g_m (theta(g_m) = m pi) and the Turing-method block count (MATH.md §2.1, §2.4)."""

from __future__ import annotations

import math

import numpy as np

from trainer.unfolding import theta, theta_prime

# Below g_1 = 23.17 the theta series' Newton derivative is not accurate enough, so the three
# smallest Gram points come from mpmath.
_MPMATH_BELOW = 1


def gram_points(m) -> np.ndarray:
    """Gram points g_m for integer m >= -1, vectorised.

    Starts from g ~ 2 pi e exp(W((m + 1/8)/e)) (as FLINT's gram_point.c) and takes Newton steps
    on theta(g) - m pi; agrees with mpmath.grampoint to ~1e-13 relative (MATH.md §2.1).

    Args:
        m: integer Gram indices (array-like), each >= -1.

    Returns:
        float64 ndarray of heights.
    """
    from scipy.special import lambertw

    m = np.asarray(m, dtype=np.int64)
    if m.size and m.min() < -1:
        raise ValueError("Gram points exist for m >= -1")
    out = np.empty(m.shape, dtype=np.float64)
    small = m < _MPMATH_BELOW
    if small.any():
        import mpmath

        out[small] = [float(mpmath.grampoint(int(k))) for k in m[small]]
    big = ~small
    if big.any():
        mb = m[big].astype(np.float64)
        g = 2 * math.pi * math.e * np.exp(lambertw((mb + 0.125) / math.e).real)
        target = mb * math.pi
        for _ in range(6):
            g = g - (theta(g) - target) / theta_prime(g)
        out[big] = g
    return out


def turing_blocks(t: float) -> int:
    """Number K of Rosser-rule Gram blocks needed on each side of g for Turing's method at height t.

    Brent 1979 Thm 3.2 with Trudgian's 2011 constants, as in mpmath's sure_number_block:
    K >= min(0.0061 log^2 t + 0.08 log t, 0.0031 log^2 t + 0.11 log t).
    """
    lt = math.log(t)
    return max(1, math.ceil(min(0.0061 * lt * lt + 0.08 * lt, 0.0031 * lt * lt + 0.11 * lt)))
