"""The five baselines for "predict zeros M+1 .. M+H given zeros up to M" (MATH.md §5, §5.1).

All five predict the unfolded position x_n = n - 1/2 + delta_n, so their error in x is their
error in the fluctuation delta_n:

* index (a): delta_hat = 0, i.e. x_hat = n - 1/2; its MSE is mean delta^2 (~0.111).
* ar (c2): a direct multi-step least-squares predictor of delta_{M+k} from delta_M .. delta_{M-m+1},
  refitted causally on the deltas before each window (~0.066 with m = 50).
* explicit (d): delta_hat = a * P_X(t_hat) with the prime sum P_X and t_hat = N̄^{-1}(n - 1/2);
  it uses no zeros at all and explains ~87% of Var delta (~0.014).
* smoothed (f, MATH.md §5.1): the Riesz-weighted prime sum to X = 1e5 evaluated at a height
  corrected by one damped self-consistent step; no zeros either, and 5-6x stronger (~0.0024).
  This is the bar, and the residual model's starting point (trainer.model).
* smoothed_ar: (f) plus the causal AR on its residuals, as (e) is for (d).

Sign convention: delta_n = -[S(gamma_n-) + S(gamma_n+)]/2 and S(t) ~ -(1/pi) sum Lambda(n)
sin(t log n)/(sqrt(n) log n) = -P_X(t), so delta ~ +P_X(t_hat) and the fitted scale a is positive
(~0.8 at n ~ 1e5; below 1 because a truncated sum at a smoothed height over-predicts).

Everything here is float64 numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from trainer.unfolding import inverse_smooth_count

# Heights per NUFFT call in prime_sum span at most this much (the fine grid is ~1e5 points).
_NUFFT_SPAN = 20_000.0


@lru_cache(maxsize=8)
def _prime_power_terms(X: int) -> tuple[np.ndarray, np.ndarray]:
    """(log n, Lambda(n) / (sqrt(n) log n)) for the prime powers n = p^k <= X.

    Lambda(p^k) / log(p^k) = 1/k, so the coefficient is 1 / (k sqrt(n)).
    """
    if not 2 <= X <= MAX_PRIME_CUTOFF:
        raise ValueError(f"prime_sum: X must be in [2, {MAX_PRIME_CUTOFF:.0e}], got {X}")
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


# Largest prime_cutoff accepted: the sieve is X bytes and the terms ~X / log X float64 pairs.
MAX_PRIME_CUTOFF = 100_000_000


def prime_sum(t, X: int = 1000, *, smoothed: bool = False) -> np.ndarray:
    """P_X(t) = (1/pi) sum_{n <= X} w(n) Lambda(n) sin(t log n) / (sqrt(n) log n)  (MATH.md §5 (d), §5.1).

    w(n) = 1 for the sharp sum (d), w(n) = 1 - log n / log X (Riesz weights) when ``smoothed``.
    Memory is O(len(t) + X / log X) whatever len(t).

    Args:
        t: heights on the critical line (array-like, float64).
        X: cut-off of the sum over prime powers (default 1000).
        smoothed: Riesz-weighted (the P~_X of MATH.md §5.1) instead of sharp.

    Returns:
        float64 ndarray of the same shape as ``t``.
    """
    t = np.asarray(t, dtype=np.float64)
    logs, coefs = _prime_power_terms(int(X))
    if smoothed:
        coefs = coefs * (1.0 - logs / math.log(X))
    flat = t.ravel()
    out = np.empty_like(flat)
    if flat.size == 0:
        return out.reshape(t.shape)
    if not np.all(np.isfinite(flat)):
        raise ValueError("prime_sum: heights must be finite")
    # sum_m c_m sin(t log m) = Im sum_m c_m exp(i t log m): one type-3 NUFFT per group of heights
    # spanning at most _NUFFT_SPAN, so its fine grid (~ span * log X) stays small wherever the
    # heights lie. ~100x faster than the dense sin matrix for contiguous zeros; the result
    # agrees with the direct sum to ~1e-13 relative to sum |c_m| (eps below) plus the float64
    # rounding of t log m, which the direct sum has too.
    import finufft

    order = np.argsort(flat, kind="stable")
    sorted_t = flat[order]
    cuts = [0]
    while cuts[-1] < sorted_t.size:
        cuts.append(int(np.searchsorted(sorted_t, sorted_t[cuts[-1]] + _NUFFT_SPAN, side="right")))
    values = np.empty_like(sorted_t)
    weights = coefs.astype(np.complex128)
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        values[a:b] = finufft.nufft1d3(logs, weights, sorted_t[a:b], eps=1e-13, isign=1, nthreads=1).imag
    out[order] = values
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


def _least_squares_scale(p: np.ndarray, delta: np.ndarray) -> float:
    denom = float(p @ p)
    if denom == 0.0:
        raise ValueError("the prime sum vanishes on the fitting range: cannot fit a scale")
    return float(p @ delta / denom)


@dataclass(frozen=True)
class SmoothedPredictor:
    """Baseline (f) of MATH.md §5.1: delta_hat_n = a1 * P~_X(t1_n), which uses no zeros, with

        t0_n = N̄^{-1}(n - 1/2),  t1_n = N̄^{-1}(n - 1/2 + beta * a0 * P~_X(t0_n)),

    P~_X the Riesz-weighted prime sum (``prime_sum(..., smoothed=True)``) and the scales a0, a1
    fitted by least squares on a training range (``fit``).

    Attributes:
        X: prime cut-off (default 1e5: ~9,700 prime powers, so ~2e4 sines per zero).
        beta: damping of the self-consistent step (0.5; 1 is a full step).
        a0, a1: the fitted scales (dimensionless, ~0.8-0.9).
    """

    X: int
    beta: float
    a0: float
    a1: float

    @classmethod
    def fit(cls, indices, delta, X: int = 100_000, beta: float = 0.5) -> tuple[SmoothedPredictor, np.ndarray]:
        """Fit a0 then a1 on (indices, delta); also return the fitted predictions at those indices.

        Args:
            indices: 1-based zero indices n of the training deltas.
            delta: the fluctuations delta_n there (unfolded units).
            X: prime cut-off.
            beta: damping of the self-consistent step.

        Returns:
            (predictor, delta_hat at ``indices``): the second is what ``predict(indices)`` gives,
            returned so a caller that fits on every training node pays for the sums once.
        """
        n = np.asarray(indices, dtype=np.float64)
        delta = np.asarray(delta, dtype=np.float64)
        if delta.shape != n.shape or delta.ndim != 1 or delta.size == 0:
            raise ValueError(
                "SmoothedPredictor.fit: indices and delta must be non-empty 1-D arrays of equal length"
            )
        p0 = prime_sum(inverse_smooth_count(n - 0.5), X, smoothed=True)
        a0 = _least_squares_scale(p0, delta)
        p1 = prime_sum(inverse_smooth_count(n - 0.5 + beta * a0 * p0), X, smoothed=True)
        a1 = _least_squares_scale(p1, delta)
        return cls(int(X), float(beta), a0, a1), a1 * p1

    def predict(self, indices) -> np.ndarray:
        """delta_hat_n for the 1-based zero indices n (float64, shape of ``indices``)."""
        n = np.asarray(indices, dtype=np.float64)
        p0 = prime_sum(inverse_smooth_count(n - 0.5), self.X, smoothed=True)
        t1 = inverse_smooth_count(n - 0.5 + self.beta * self.a0 * p0)
        return self.a1 * prime_sum(t1, self.X, smoothed=True)


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
    # The normal equations (one (m+1)^2 solve for all H right-hand sides) are ~10x faster than
    # lstsq's SVD and agree with it to ~cond^2 * 1e-16; a (near-)collinear history, like a pure
    # recursion, falls back to lstsq's minimum-norm solution.
    gram = design.T @ design
    if np.linalg.cond(gram) < 1e10:
        coef = np.linalg.solve(gram, design.T @ targets)
    else:
        coef, *_ = np.linalg.lstsq(design, targets, rcond=None)
    last = np.concatenate([[1.0], d[-m:]])
    return last @ coef


BASELINES = (
    "baseline_index",
    "baseline_ar",
    "baseline_explicit",
    "baseline_smoothed",
    "baseline_smoothed_ar",
)


def predict_window(
    delta_history,
    future_indices,
    *,
    explicit_a: float,
    X: int = 1000,
    ar_m: int = 50,
    ar_fit_len: int = 20000,
    smoothed_history=None,
    smoothed_future=None,
    smoothed_ar_fit_len: int = 400,
) -> dict[str, np.ndarray]:
    """Every baseline's predicted fluctuations delta_hat at the H zeros after one window start M.

    Args:
        delta_history: true deltas up to and including delta_M (oldest first); the AR models
            fit on their last ``ar_fit_len`` / ``smoothed_ar_fit_len`` values only (causal).
        future_indices: the H indices M+1 .. M+H.
        explicit_a: scale of the sharp explicit predictor (d).
        X: its prime cut-off.
        ar_m: AR lags of (c2) and of the AR on (f)'s residuals.
        ar_fit_len: deltas the AR (c2) fits on.
        smoothed_history: (f)'s predictions aligned with ``delta_history`` (at least its last
            ``smoothed_ar_fit_len`` values finite), or None to leave out the two (f) baselines.
        smoothed_future: (f)'s predictions at ``future_indices``.
        smoothed_ar_fit_len: residuals delta - (f) the AR on (f) fits on.

    Returns:
        {baseline name: float64 [H]} in BASELINES order (three names without (f)).
    """
    d = np.asarray(delta_history, dtype=np.float64)
    future = np.asarray(future_indices, dtype=np.int64)
    h = future.size
    out = {
        "baseline_index": np.zeros(h),
        "baseline_ar": ar_fit_predict(d[-ar_fit_len:], h, ar_m),
        "baseline_explicit": explicit_delta(future, explicit_a, X),
    }
    if smoothed_future is not None:
        f_hist = np.asarray(smoothed_history, dtype=np.float64)
        residual = (d - f_hist)[-smoothed_ar_fit_len:]
        f_future = np.asarray(smoothed_future, dtype=np.float64)
        out["baseline_smoothed"] = f_future
        out["baseline_smoothed_ar"] = f_future + ar_fit_predict(residual, h, ar_m)
    return out


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
    smoothed: SmoothedPredictor | None = None,
    smoothed_ar_fit_len: int = 400,
) -> dict[str, np.ndarray]:
    """Per-window MSE of the baselines on the windows n = M+1 .. M+H after each start M.

    The MSE is over the H predicted unfolded positions; since every baseline predicts
    x_hat = n - 1/2 + delta_hat, it equals mean (delta_n - delta_hat_n)^2. The AR models are
    fitted on the deltas up to and including delta_M only (causal).

    Args:
        delta: 1-D fluctuations of a contiguous run of zeros.
        indices: their 1-based zero indices (consecutive integers).
        starts: window start indices M (1-based zero indices; the last known zero).
        horizon: H, zeros predicted per window (default 100).
        explicit_a: scale of the explicit predictor (``fit_explicit_scale`` on the training range).
        X: prime-sum cut-off of the explicit predictor (default 1000).
        ar_m: AR lags (default 50).
        ar_fit_len: number of deltas before each window the AR model is fitted on (default 20000).
        smoothed: the fitted (f) predictor, or None for the three baselines without it; (f) is
            evaluated only on the zeros each window needs.
        smoothed_ar_fit_len: residuals of (f) before each window its AR fits on (default 400).

    Returns:
        {baseline name: float64 array, one MSE per start}.
    """
    delta = np.asarray(delta, dtype=np.float64)
    indices = np.asarray(indices, dtype=np.int64)
    if delta.ndim != 1 or delta.shape != indices.shape:
        raise ValueError("window_baselines: delta and indices must be 1-D arrays of equal length")
    if indices.size and np.any(np.diff(indices) != 1):
        raise ValueError("window_baselines: indices must be consecutive (one contiguous run of zeros)")
    starts = np.asarray(starts, dtype=np.int64).ravel()
    names = BASELINES if smoothed is not None else BASELINES[:3]
    out = {name: np.empty(starts.size) for name in names}
    for i, start in enumerate(starts):
        pos = int(start - indices[0])  # position of delta_M
        if pos < 0 or pos + horizon >= delta.size:
            raise ValueError(
                f"window_baselines: window after M={start} (n = {start + 1}..{start + horizon}) "
                f"is not inside the zeros {indices[0]}..{indices[-1]}"
            )
        true = delta[pos + 1 : pos + 1 + horizon]
        history = delta[max(0, pos + 1 - ar_fit_len) : pos + 1]
        future = indices[pos + 1 : pos + 1 + horizon]
        f_hist = f_future = None
        if smoothed is not None:
            back = min(smoothed_ar_fit_len, history.size)
            f_hist = np.full(history.size, np.nan)
            f_hist[-back:] = smoothed.predict(indices[pos + 1 - back : pos + 1])
            f_future = smoothed.predict(future)
        try:
            preds = predict_window(
                history,
                future,
                explicit_a=explicit_a,
                X=X,
                ar_m=ar_m,
                ar_fit_len=ar_fit_len,
                smoothed_history=f_hist,
                smoothed_future=f_future,
                smoothed_ar_fit_len=smoothed_ar_fit_len,
            )
        except ValueError as e:
            raise ValueError(f"window_baselines: window after M={start}: {e}") from e
        for name, pred in preds.items():
            out[name][i] = np.mean((true - pred) ** 2)
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
