"""trainer.baselines on hand examples with exact answers and on the real first 30,000 Odlyzko zeros."""

from __future__ import annotations

import math

import numpy as np
import pytest
from trainer.baselines import (
    SmoothedPredictor,
    ar_fit_predict,
    explicit_delta,
    fit_explicit_scale,
    prime_sum,
    summarise,
    window_baselines,
)
from trainer.data.dataset import open_dataset
from trainer.unfolding import fluctuations, unfold

from trainer import baselines

# ---- prime sum --------------------------------------------------------------------------------


def _von_mangoldt(n: int) -> float:
    for p in range(2, n + 1):
        if n % p == 0:  # p is the smallest prime factor
            while n % p == 0:
                n //= p
            return math.log(p) if n == 1 else 0.0
    return 0.0


def _prime_sum_direct(t: float, X: int) -> float:
    return (
        sum(
            _von_mangoldt(n) * math.sin(t * math.log(n)) / (math.sqrt(n) * math.log(n))
            for n in range(2, X + 1)
            if _von_mangoldt(n) > 0
        )
        / math.pi
    )


@pytest.mark.parametrize("X", [2, 10, 100])
def test_prime_sum_matches_direct_sum(X):
    t = np.array([14.134725, 1000.5, 77_777.25, 1.1e6])
    expected = [_prime_sum_direct(v, X) for v in t]
    assert prime_sum(t, X).tolist() == pytest.approx(expected, abs=1e-12)


def _dense_sum(t: np.ndarray, X: int, smoothed: bool) -> np.ndarray:
    logs, coefs = baselines._prime_power_terms(X)
    if smoothed:
        coefs = coefs * (1 - logs / math.log(X))
    return np.sin(np.outer(t.ravel(), logs)) @ coefs / math.pi


@pytest.mark.parametrize("smoothed", [False, True])
def test_prime_sum_over_many_nufft_groups_matches_the_dense_sum(smoothed):
    # Unsorted heights from 14 to 2e6, far wider than one NUFFT group: every group must land in
    # its own places, in the input's shape.
    rng = np.random.default_rng(3)
    t = np.concatenate([rng.uniform(14, 2e6, 500), rng.uniform(1e5, 1.001e5, 100)])
    rng.shuffle(t)
    t = t.reshape(20, 30)
    got = prime_sum(t, 3000, smoothed=smoothed)
    assert got.shape == (20, 30)
    # t log n ~ 3e7 carries ~4e-9 of float64 rounding in either evaluation.
    assert np.abs(got.ravel() - _dense_sum(t, 3000, smoothed)).max() < 1e-7


def test_smoothed_sum_has_riesz_weights():
    # By hand for X = 10: prime powers 2, 3, 4, 5, 7, 8, 9 with weights 1 - log n / log 10.
    t = 321.5
    terms = [(2, 1), (3, 1), (4, 2), (5, 1), (7, 1), (8, 3), (9, 2)]
    expected = (
        sum(
            (1 - math.log(n) / math.log(10)) * math.sin(t * math.log(n)) / (k * math.sqrt(n))
            for n, k in terms
        )
        / math.pi
    )
    assert prime_sum(np.array([t]), 10, smoothed=True)[0] == pytest.approx(expected, abs=1e-13)


def test_prime_sum_rejects_a_cutoff_out_of_range():
    with pytest.raises(ValueError, match="X must be in"):
        prime_sum(np.array([100.0]), 1)
    with pytest.raises(ValueError, match="X must be in"):
        prime_sum(np.array([100.0]), baselines.MAX_PRIME_CUTOFF + 1)


def test_fit_explicit_scale_recovers_a_known_scale():
    idx = np.arange(5000, 6000)
    delta = 0.7 * explicit_delta(idx, 1.0, X=200)
    assert fit_explicit_scale(idx, delta, X=200) == pytest.approx(0.7, abs=1e-12)
    with pytest.raises(ValueError, match="equal length"):
        fit_explicit_scale(idx, delta[:-1])


# ---- linear predictor ------------------------------------------------------------------------


def test_ar_predicts_a_linear_recursion_exactly():
    # A shifted sinusoid obeys d_t = 2 cos(w) d_{t-1} - d_{t-2} + c (2 - 2 cos w) exactly, so the
    # direct least-squares predictor must continue it exactly, even with more lags than needed.
    w, c = 0.37, 0.2
    t = np.arange(700)
    d = np.sin(w * t) + c
    pred = ar_fit_predict(d[:600], horizon=100, m=5)
    assert pred == pytest.approx(d[600:], abs=1e-8)


def test_ar_recovers_an_ar2_process():
    # delta_t = 0.5 delta_{t-1} - 0.3 delta_{t-2} + e_t: the best k-step prediction is the
    # recursion iterated without noise; 20,000 samples pin the coefficients to ~0.01.
    rng = np.random.default_rng(4)
    d = np.zeros(20_000)
    e = rng.normal(size=d.size)
    for i in range(2, d.size):
        d[i] = 0.5 * d[i - 1] - 0.3 * d[i - 2] + e[i]
    d[-2:] = [1.5, 2.0]  # an informative end state, so predictions are far from 0
    pred = ar_fit_predict(d, horizon=6, m=4)
    exact, (a, b) = [], (d[-1], d[-2])
    for _ in range(6):
        a, b = 0.5 * a - 0.3 * b, a
        exact.append(a)
    assert pred == pytest.approx(exact, abs=0.05)
    assert abs(pred[0] - 0.55) < 0.05  # 0.5 * 2.0 - 0.3 * 1.5


def test_ar_rejects_short_history():
    with pytest.raises(ValueError, match="too few"):
        ar_fit_predict(np.zeros(200), horizon=100, m=50)


# ---- windows on synthetic and real zeros -----------------------------------------------------


def test_summarise_hand_example():
    mean, stderr = summarise([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert stderr == pytest.approx(math.sqrt(5 / 3) / 2, abs=1e-15)
    mean, stderr = summarise([0.3])
    assert mean == 0.3 and math.isnan(stderr)
    with pytest.raises(ValueError, match="no windows"):
        summarise([])


@pytest.fixture(scope="module")
def first_zeros(odlyzko_small):
    ds = open_dataset(odlyzko_small)
    idx = np.arange(ds.first_index, ds.last_index + 1)
    return idx, fluctuations(unfold(ds.ordinates(ds.first_index, ds.last_index + 1)), ds.first_index)


@pytest.fixture(scope="module")
def explicit_a(first_zeros):
    idx, delta = first_zeros
    return fit_explicit_scale(idx[1000:20000], delta[1000:20000])


def test_explicit_formula_sign_and_scale_on_real_zeros(first_zeros, explicit_a):
    idx, delta = first_zeros
    # delta ~ +a P_X(t_hat) with a ~ 0.72 here (0.82 when fitted on n in [2e4, 1e5), MATH.md §5).
    assert 0.6 < explicit_a < 0.9
    pred = explicit_delta(idx[20000:], explicit_a)
    assert np.corrcoef(pred, delta[20000:])[0, 1] > 0.9


def test_window_baselines_on_real_zeros(first_zeros, explicit_a):
    idx, delta = first_zeros
    starts = np.arange(20_000, 29_800, 800)
    out = window_baselines(delta, idx, starts, 100, explicit_a=explicit_a, ar_fit_len=5000)
    assert set(out) == {"baseline_index", "baseline_ar", "baseline_explicit"}
    assert all(v.shape == (starts.size,) for v in out.values())
    # index baseline: x_hat = n - 1/2, so its MSE is mean delta^2 over each window, exactly.
    expected_index = [np.mean(delta[m : m + 100] ** 2) for m in starts]  # delta[m] is zero m + 1
    assert out["baseline_index"] == pytest.approx(expected_index, rel=1e-13)
    index, ar, expl = (summarise(out[k])[0] for k in ("baseline_index", "baseline_ar", "baseline_explicit"))
    # Measured: 0.096, 0.058, 0.010. The explicit formula explains ~90% of Var delta.
    assert 0.08 < index < 0.11
    assert expl < 0.2 * index
    assert expl < ar < index


def test_window_baselines_are_causal(first_zeros, explicit_a):
    idx, delta = first_zeros
    starts = np.array([21_000, 25_000])
    kwargs = dict(explicit_a=explicit_a, ar_m=20, ar_fit_len=3000)
    clean = window_baselines(delta[:26_000], idx[:26_000], starts, 50, **kwargs)
    # Garbage after the last window cannot change anything.
    spoiled = delta[:26_000].copy()
    spoiled[25_050:] = 1e6  # zeros after 25,050
    assert all(
        np.array_equal(clean[k], v)
        for k, v in window_baselines(spoiled, idx[:26_000], starts, 50, **kwargs).items()
    )
    # Inside the first window only the truth moves: the AR forecast is the one from the history.
    shifted = delta[:26_000].copy()
    shifted[21_000:21_050] += 0.5  # zeros 21,001 .. 21,050
    forecast = ar_fit_predict(delta[18_000:21_000], 50, 20)
    moved = window_baselines(shifted, idx[:26_000], starts, 50, **kwargs)
    assert moved["baseline_ar"][0] == pytest.approx(
        np.mean((shifted[21_000:21_050] - forecast) ** 2), rel=1e-12
    )
    assert moved["baseline_ar"][1] == clean["baseline_ar"][1]


def test_window_baselines_reject_windows_outside_the_data(first_zeros, explicit_a):
    idx, delta = first_zeros
    with pytest.raises(ValueError, match="M=29950"):
        window_baselines(delta, idx, [29_950], 100, explicit_a=explicit_a)
    with pytest.raises(ValueError, match="M=100"):
        window_baselines(delta, idx, [100], 100, explicit_a=explicit_a)
    with pytest.raises(ValueError, match="consecutive"):
        window_baselines(delta[::2], idx[::2], [100], 10, explicit_a=explicit_a)


# ---- (f): the smoothed sum with one damped self-consistent step (MATH.md §5.1) ---------------


def test_smoothed_predictor_fit_returns_its_own_predictions(first_zeros):
    idx, delta = first_zeros
    fit_idx = idx[5000:15000]
    predictor, fitted = SmoothedPredictor.fit(fit_idx, delta[5000:15000], X=10_000)
    assert predictor.X == 10_000 and predictor.beta == 0.5
    # The fit's predictions are what predict() gives, bit for bit: the trainer reuses them.
    assert np.array_equal(predictor.predict(fit_idx), fitted)
    # Both scales are least squares: the residual is orthogonal to the last prime sum.
    p1 = fitted / predictor.a1
    assert abs(p1 @ (delta[5000:15000] - fitted)) < 1e-8 * (p1 @ p1)


def test_smoothed_is_the_strongest_baseline_on_real_zeros(first_zeros, explicit_a):
    idx, delta = first_zeros
    predictor, _ = SmoothedPredictor.fit(idx[1000:20000], delta[1000:20000])
    starts = np.arange(20_500, 29_800, 600)
    out = window_baselines(
        delta, idx, starts, 100, explicit_a=explicit_a, ar_fit_len=5000, smoothed=predictor
    )
    means = {k: summarise(v)[0] for k, v in out.items()}
    assert set(means) == set(baselines.BASELINES)
    # MATH.md §5.1 measured (f) 5-6x below (d) at n in [3e5, 2e6]; at n ~ 2.5e4, with X = 1e5 for
    # 3,000 zeros of height, at least 3x.
    assert means["baseline_smoothed"] < means["baseline_explicit"] / 3
    # (f) plus the AR on its residuals: another causal baseline of the same order.
    assert means["baseline_smoothed_ar"] < 2 * means["baseline_smoothed"]
    # The (f) prediction of a window is predict() at its zeros, whatever else is in the data.
    m = int(starts[0])
    expected = np.mean((delta[m : m + 100] - predictor.predict(idx[m : m + 100])) ** 2)
    assert out["baseline_smoothed"][0] == pytest.approx(expected, rel=1e-12)
