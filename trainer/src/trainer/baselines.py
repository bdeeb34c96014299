"""The three honest baselines for "predict zeros M+1 .. M+H given zeros up to M" (MATH.md §5).

All three predict the unfolded position x_n = n - 1/2 + delta_n, so their error in x is their
error in the fluctuation delta_n:

* index (a): delta_hat = 0, i.e. x_hat = n - 1/2; its MSE is mean delta^2 (~0.111).
* ar (c2): a direct multi-step least-squares predictor of delta_{M+k} from delta_M .. delta_{M-m+1},
  refitted causally on the deltas before each window (~0.066 with m = 50).
* explicit (d): delta_hat = a * P_X(t_hat) with the prime sum P_X and t_hat = N̄^{-1}(n - 1/2);
  it uses no zeros at all and explains ~87% of Var delta (~0.014).

Sign convention: delta_n = -[S(gamma_n-) + S(gamma_n+)]/2 and S(t) ~ -(1/pi) sum Lambda(n)
sin(t log n)/(sqrt(n) log n) = -P_X(t), so delta ~ +P_X(t_hat) and the fitted scale a is positive
(~0.8 at n ~ 1e5; below 1 because a truncated sum at a smoothed height over-predicts).

Everything here is float64 numpy.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from trainer.unfolding import inverse_smooth_count

# Bound on the (len(t) x number-of-prime-powers) phase matrix of prime_sum: 2^21 float64 = 16 MiB.
_PRIME_SUM_CHUNK_ELEMENTS = 1 << 21


@lru_cache(maxsize=8)
def _prime_power_terms(X: int) -> tuple[np.ndarray, np.ndarray]:
    """(log n, Lambda(n) / (sqrt(n) log n)) for the prime powers n = p^k <= X.

    Lambda(p^k) / log(p^k) = 1/k, so the coefficient is 1 / (k sqrt(n)).
    """
    if X < 2:
        raise ValueError(f"prime_sum: X must be >= 2, got {X}")
    sieve = np.ones(X + 1, dtype=bool)
    sieve[:2] = False
    for p in range(2, math.isqrt(X) + 1):
        if sieve[p]:
            sieve[p * p :: p] = False
    logs, coefs = [], []
    for p in np.flatnonzero(sieve):
        n, k = int(p), 1
        while n <= X:
            logs.append(math.log(n))
            coefs.append(1.0 / (k * math.sqrt(n)))
            n, k = n * int(p), k + 1
    return np.array(logs), np.array(coefs)


def prime_sum(t, X: int = 1000) -> np.ndarray:
    """P_X(t) = (1/pi) sum_{n <= X} Lambda(n) sin(t log n) / (sqrt(n) log n)  (MATH.md §5 (d)).

    Evaluated in chunks of t so memory stays below ~16 MiB whatever len(t).

    Args:
        t: heights on the critical line (array-like, float64).
        X: cut-off of the sum over prime powers (default 1000).

    Returns:
        float64 ndarray of the same shape as ``t``.
    """
    t = np.asarray(t, dtype=np.float64)
    logs, coefs = _prime_power_terms(int(X))
    flat = t.ravel()
    out = np.empty_like(flat)
    chunk = max(1, _PRIME_SUM_CHUNK_ELEMENTS // logs.size)
    for i in range(0, flat.size, chunk):
        out[i : i + chunk] = np.sin(np.outer(flat[i : i + chunk], logs)) @ coefs
    return (out / math.pi).reshape(t.shape)


def _t_hat(indices) -> np.ndarray:
    """t_hat = N̄^{-1}(n - 1/2): the height where the n-th zero would sit without fluctuation."""
    n = np.asarray(indices, dtype=np.float64)
    return inverse_smooth_count(n - 0.5)


def fit_explicit_scale(indices, delta, X: int = 1000) -> float:
    """Least-squares scale a of delta_n ~ a * P_X(t_hat_n) on a training range (no intercept).

    Args:
        indices: 1-based zero indices n of the training deltas.
        delta: the fluctuations delta_n at those indices (unfolded units).
        X: prime-sum cut-off (default 1000); use the same X for ``explicit_delta``.

    Returns:
        a (dimensionless; ~0.8 at n ~ 1e5).
    """
    delta = np.asarray(delta, dtype=np.float64)
    if delta.shape != np.shape(indices) or delta.ndim != 1 or delta.size == 0:
        raise ValueError("fit_explicit_scale: indices and delta must be non-empty 1-D arrays of equal length")
    p = prime_sum(_t_hat(indices), X)
    return float(p @ delta / (p @ p))


def explicit_delta(indices, a: float, X: int = 1000) -> np.ndarray:
    """The explicit-formula prediction delta_hat_n = a * P_X(t_hat_n); it uses no zeros.

    Args:
        indices: 1-based zero indices n to predict.
        a: scale from ``fit_explicit_scale``.
        X: prime-sum cut-off (default 1000).

    Returns:
        float64 ndarray of predicted fluctuations (unfolded units), shape of ``indices``.
    """
    return a * prime_sum(_t_hat(indices), X)


def ar_fit_predict(delta_history, horizon: int, m: int = 50) -> np.ndarray:
    """Direct multi-step linear prediction of the next ``horizon`` deltas from the last ``m``.

    For each k = 1..horizon a separate vector (intercept + m lags) is fitted by least squares
    on every position of the history where both the m lags and the k-th next value exist
    (the same rows for every k), solved as one lstsq with ``horizon`` right-hand sides.
    Direct rather than iterated one-step prediction, because iterating compounds the
    one-step error (MATH.md §5 (c2) uses the direct form).

    Args:
        delta_history: 1-D fluctuations ending at the last known zero (oldest first).
        horizon: number of future values H to predict.
        m: number of lags (default 50).

    Returns:
        float64 ndarray of shape (horizon,): predicted delta at steps 1..horizon.
    """
    d = np.asarray(delta_history, dtype=np.float64)
    if d.ndim != 1:
        raise ValueError("ar_fit_predict: delta_history must be 1-D")
    if horizon < 1 or m < 1:
        raise ValueError(f"ar_fit_predict: horizon ({horizon}) and m ({m}) must be >= 1")
    rows = d.size - m - horizon + 1
    if rows < 2 * (m + 1):
        raise ValueError(
            f"ar_fit_predict: {d.size} history values are too few for m={m} lags and horizon={horizon} "
            f"(need at least {3 * m + horizon + 1})"
        )
    # lags[j] = d[j : j + m] (oldest first); row j predicts d[j + m - 1 + k] for k = 1..H.
    lags = np.lib.stride_tricks.sliding_window_view(d, m)
    design = np.empty((rows, m + 1))
    design[:, 0] = 1.0
    design[:, 1:] = lags[:rows]
    # A contiguous copy: LAPACK copies a strided view element by element, which is slower.
    targets = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(d[m:], horizon)[:rows])
    coef, *_ = np.linalg.lstsq(design, targets, rcond=None)
    last = np.concatenate([[1.0], d[-m:]])
    return last @ coef


def window_baselines(
    delta,
    indices,
    starts,
    horizon: int = 100,
    *,
    explicit_a: float,
    X: int = 1000,
    ar_m: int = 50,
    ar_fit_len: int = 20000,
) -> dict[str, np.ndarray]:
    """Per-window MSE of the three baselines on the windows n = M+1 .. M+H after each start M.

    The MSE is over the H predicted unfolded positions; since every baseline predicts
    x_hat = n - 1/2 + delta_hat, it equals mean (delta_n - delta_hat_n)^2. The AR model is
    fitted on the ``ar_fit_len`` deltas up to and including delta_M only (causal).

    Args:
        delta: 1-D fluctuations of a contiguous run of zeros.
        indices: their 1-based zero indices (consecutive integers).
        starts: window start indices M (1-based zero indices; the last known zero).
        horizon: H, zeros predicted per window (default 100).
        explicit_a: scale of the explicit predictor (``fit_explicit_scale`` on the training range).
        X: prime-sum cut-off (default 1000).
        ar_m: AR lags (default 50).
        ar_fit_len: number of deltas before each window the AR model is fitted on (default 20000).

    Returns:
        {"baseline_index", "baseline_ar", "baseline_explicit"}: float64 arrays, one MSE per start.
    """
    delta = np.asarray(delta, dtype=np.float64)
    indices = np.asarray(indices, dtype=np.int64)
    if delta.ndim != 1 or delta.shape != indices.shape:
        raise ValueError("window_baselines: delta and indices must be 1-D arrays of equal length")
    if indices.size and np.any(np.diff(indices) != 1):
        raise ValueError("window_baselines: indices must be consecutive (one contiguous run of zeros)")
    starts = np.asarray(starts, dtype=np.int64).ravel()
    out = {name: np.empty(starts.size) for name in ("baseline_index", "baseline_ar", "baseline_explicit")}
    for i, start in enumerate(starts):
        pos = int(start - indices[0])  # position of delta_M
        if pos < 0 or pos + horizon >= delta.size:
            raise ValueError(
                f"window_baselines: window after M={start} (n = {start + 1}..{start + horizon}) "
                f"is not inside the zeros {indices[0]}..{indices[-1]}"
            )
        true = delta[pos + 1 : pos + 1 + horizon]
        try:
            ar = ar_fit_predict(delta[max(0, pos + 1 - ar_fit_len) : pos + 1], horizon, ar_m)
        except ValueError as e:
            raise ValueError(f"window_baselines: window after M={start}: {e}") from e
        expl = explicit_delta(indices[pos + 1 : pos + 1 + horizon], explicit_a, X)
        out["baseline_index"][i] = np.mean(true**2)
        out["baseline_ar"][i] = np.mean((true - ar) ** 2)
        out["baseline_explicit"][i] = np.mean((true - expl) ** 2)
    return out


def summarise(per_window) -> tuple[float, float]:
    """Mean over windows and its standard error std(ddof=1) / sqrt(W).

    Args:
        per_window: 1-D per-window errors (W >= 1).

    Returns:
        (mean, stderr); stderr is NaN for a single window (undefined, not zero).
    """
    x = np.asarray(per_window, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("summarise: no windows")
    if x.size == 1:
        return float(x[0]), float("nan")
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))
