"""trainer.losses against independent computations: a direct triple-loop MMD, quadrature values,
the surmise's differential entropy, and the per-loss functions themselves for compute_losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from trainer.data.dataset import open_dataset
from trainer.losses import (
    LossWeights,
    compute_losses,
    gue_mmd,
    gue_nll,
    mse,
    rg_penalty,
    rg_target,
)
from trainer.rmt import block_sum_variance, default_scales, sample_wigner, wigner_pdf
from trainer.unfolding import fluctuations, spacings, unfold

from trainer import fused, losses


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mmd_triple_loop(x, y, sigma):
    """MMD^2_u of MATH.md §6 written out term by term."""

    def k(a, b):
        return math.exp(-((a - b) ** 2) / (2 * sigma * sigma))

    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j)
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n))
    return sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2 * sxy / (m * n)


def test_mse_hand_example():
    assert float(mse(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 1.0, 1.0]))) == pytest.approx(10 / 3)
    with pytest.raises(ValueError, match="shape"):
        mse(torch.ones(3), torch.ones(4))


def test_mmd_matches_triple_loop():
    rng = np.random.default_rng(0)
    x = rng.gamma(3.0, 1 / 3, size=37)
    y = rng.exponential(size=29)
    bandwidths = (0.2, 0.3, 0.4)
    expected = np.mean([_mmd_triple_loop(x, y, s) for s in bandwidths])  # averaged over bandwidths
    got = gue_mmd(torch.from_numpy(x), torch.from_numpy(y), bandwidths=bandwidths)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(expected, abs=1e-12)


def test_mmd_unbiased_under_the_null():
    # Wigner vs Wigner: each estimate is noise around 0, and so is their mean (MATH.md §6).
    # Keeping the diagonal (the biased V-statistic) would add ~(1 - E k(X, X')) (1/m + 1/n)
    # ~ 4e-3 here, about 9 standard errors of the mean.
    gen = _gen(5)
    values = np.array(
        [
            float(gue_mmd(sample_wigner(300, gen, torch.float64), sample_wigner(300, gen, torch.float64)))
            for _ in range(40)
        ]
    )
    sd_of_mean = values.std(ddof=1) / math.sqrt(values.size)
    assert abs(values.mean()) < 4 * sd_of_mean
    assert 4 * sd_of_mean < 2e-3


def _population_mmd_wigner_vs_exp(sigma: float) -> float:
    """E k(X,X') + E k(Y,Y') - 2 E k(X,Y) for X ~ Wigner, Y ~ Exp(1) by 2-D quadrature on a grid."""
    s = np.linspace(0, 10, 2501)
    w = np.full_like(s, s[1] - s[0])
    w[0] = w[-1] = w[0] / 2  # trapezoid weights
    p = wigner_pdf(torch.from_numpy(s)).numpy() * w
    q = np.exp(-s) * w
    kern = np.exp(-((s[:, None] - s[None, :]) ** 2) / (2 * sigma**2))
    return float(p @ kern @ p + q @ kern @ q - 2 * p @ kern @ q)


def test_mmd_wigner_vs_exponential_matches_quadrature():
    population = _population_mmd_wigner_vs_exp(0.3)
    assert population == pytest.approx(0.1556, abs=5e-4)  # MATH.md §6
    gen = _gen(7)
    values = []
    for _ in range(16):
        wig = sample_wigner(1000, gen, torch.float64)
        exp = torch.empty(1000, dtype=torch.float64).exponential_(generator=gen)
        values.append(float(gue_mmd(wig, exp, bandwidths=(0.3,))))
    sd_of_mean = np.std(values, ddof=1) / math.sqrt(len(values))
    assert np.mean(values) == pytest.approx(population, abs=4 * sd_of_mean)
    assert 4 * sd_of_mean < 0.02  # tight enough to tell sigma = 0.3 from 0.2 (0.134, MATH.md §6)


def test_mmd_subsamples_to_max_samples():
    gen = _gen(11)
    pred = (sample_wigner(50_000, gen, torch.float64) * 1.3).requires_grad_(True)
    ref = sample_wigner(30_000, gen, torch.float64)
    value = gue_mmd(pred, ref, max_samples=500, generator=_gen(1))
    value.backward()
    # Only the 500 subsampled predictions received gradient.
    assert int((pred.grad != 0).sum()) == 500
    # Same generator seed, same subsample, same value.
    again = gue_mmd(pred.detach(), ref, max_samples=500, generator=_gen(1))
    assert float(again) == float(value.detach())
    # A scaled Wigner sample is far from Wigner: the subsampled estimate still sees it.
    assert float(value.detach()) > 0.01


def test_mmd_of_half_precision_predictions_is_computed_in_float32():
    gen = _gen(8)
    pred, ref = sample_wigner(400, gen, torch.float64), sample_wigner(400, gen, torch.float64)
    half = pred.bfloat16().requires_grad_(True)
    value = gue_mmd(half, ref)
    assert value.dtype == torch.float32
    assert float(value.detach()) == pytest.approx(float(gue_mmd(half.detach().double(), ref)), abs=1e-6)
    value.backward()
    assert half.grad.dtype == torch.bfloat16 and torch.isfinite(half.grad.float()).all()


def test_mmd_rejects_too_few_values():
    with pytest.raises(ValueError, match="at least 2"):
        gue_mmd(torch.ones(1), torch.ones(5))


def test_nll_of_surmise_samples_is_its_entropy():
    def integrand(s):
        p = float(wigner_pdf(torch.tensor(s, dtype=torch.float64)))
        return -p * math.log(p) if p > 0 else 0.0

    entropy = integrate.quad(integrand, 0, np.inf, epsabs=1e-13)[0]
    s = sample_wigner(200_000, _gen(2), torch.float64)
    per_sample = -torch.log(wigner_pdf(s))
    sd = float(per_sample.std()) / math.sqrt(s.numel())
    assert float(gue_nll(s)) == pytest.approx(entropy, abs=4 * sd)
    # A too-narrow prediction (everything at 1) scores worse than the surmise's own samples would.
    assert float(gue_nll(torch.ones(10))) == pytest.approx(-math.log(32 / math.pi**2) + 4 / math.pi, abs=1e-6)


@pytest.fixture(scope="module")
def real_spacings(odlyzko_small):
    ds = open_dataset(odlyzko_small)
    x = unfold(np.asarray(ds.ordinates(5000, 30_001)))
    return torch.from_numpy(spacings(x)), fluctuations(x, 5000)


def test_real_spacings_saturate_and_score_zero_against_their_own_target(real_spacings):
    s, delta = real_spacings
    scales = default_scales(s.numel())
    assert scales[-1] == 1024
    # MATH.md §4.5: Var(x_{n+L} - x_n) saturates near 2 Var(delta) ~ 0.2 for L >= 4 (Berry).
    v = block_sum_variance(s, scales)
    assert torch.all((v > 0.8 * 2 * delta.var()) & (v < 1.35 * 2 * delta.var()))  # measured 0.95 .. 1.23
    target = rg_target(s, scales)
    assert float(rg_penalty(s, target, scales)) == 0.0
    # The same spacings in random order are iid-like: V(L) ~ L Var(s), log ratio ~ log(L/2) at L = 1024.
    shuffled = s[torch.randperm(s.numel(), generator=_gen(3))]
    assert float(block_sum_variance(shuffled, [1024])[0]) > 100 * float(v[-1])
    assert float(rg_penalty(shuffled, target, scales)) > 5.0


def test_rg_penalty_rejects_mismatched_scales():
    s = torch.ones(100) + 0.1 * torch.randn(100, generator=_gen(0))
    with pytest.raises(ValueError, match="3 scales"):
        rg_penalty(s, torch.zeros(2), [2, 4, 8])


# ---- compute_losses -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batch():
    gen = _gen(21)
    target = sample_wigner(1200, gen, torch.float64)
    pred = (target + 0.1 * torch.randn(1200, generator=gen, dtype=torch.float64)).abs()
    reference = sample_wigner(1000, gen, torch.float64)
    scales = default_scales(500)
    return pred, target, reference, scales, rg_target(target, scales)


ALL_ON = LossWeights(mse=1.0, gue_nll=0.1, gue_mmd=2.0, rg_penalty=0.5)


def test_one_segment_equals_the_per_loss_functions(batch):
    pred, target, reference, scales, rgt = batch
    total, parts = compute_losses(
        pred,
        target,
        ALL_ON,
        segments=[(0, pred.numel())],
        mmd_reference=reference,
        rg_target=rgt,
        scales=scales,
        generator=_gen(9),
    )
    expected = {
        "mse": mse(pred, target),
        "gue_nll": gue_nll(pred),
        "gue_mmd": gue_mmd(pred, reference, generator=_gen(9)),
        "rg_penalty": rg_penalty(pred, rgt, scales),
    }
    assert set(parts) == {"mse", "gue_nll", "gue_mmd", "rg_penalty", "total"}
    for name, value in expected.items():
        assert float(parts[name]) == float(value), name
    assert float(total) == pytest.approx(
        1.0 * float(expected["mse"])
        + 0.1 * float(expected["gue_nll"])
        + 2.0 * float(expected["gue_mmd"])
        + 0.5 * float(expected["rg_penalty"]),
        abs=1e-14,
    )
    assert float(parts["total"]) == float(total)


def test_segments_are_weighted_by_length(batch):
    pred, target, reference, scales, rgt = batch
    segments = [(0, 500), (600, 1200)]
    _, parts = compute_losses(
        pred,
        target,
        ALL_ON,
        segments=segments,
        mmd_reference=reference,
        rg_target=rgt,
        scales=scales,
        generator=_gen(4),
    )
    gen = _gen(4)  # replays the subsampling in the same segment order
    mmd = [gue_mmd(pred[a:b], reference, generator=gen) for a, b in segments]
    rg = [rg_penalty(pred[a:b], rgt, scales) for a, b in segments]
    assert float(parts["gue_mmd"]) == pytest.approx(
        (500 * float(mmd[0]) + 600 * float(mmd[1])) / 1100, abs=1e-15
    )
    assert float(parts["rg_penalty"]) == pytest.approx(
        (500 * float(rg[0]) + 600 * float(rg[1])) / 1100, abs=1e-15
    )
    # Pointwise losses use every node, not only those inside segments.
    assert float(parts["mse"]) == float(mse(pred, target))


def test_mmd_options_reach_gue_mmd(batch):
    pred, target, reference, *_ = batch
    _, parts = compute_losses(
        pred,
        target,
        LossWeights(gue_mmd=1.0),
        segments=[(0, 700), (700, 1200)],
        mmd_reference=reference,
        generator=_gen(2),
        mmd_bandwidths=(0.25,),
        mmd_max_samples=300,
    )
    gen = _gen(2)
    mmd = [gue_mmd(pred[a:b], reference, (0.25,), 300, gen) for a, b in [(0, 700), (700, 1200)]]
    assert float(parts["gue_mmd"]) == pytest.approx(
        (700 * float(mmd[0]) + 500 * float(mmd[1])) / 1200, abs=1e-15
    )


def test_default_scales_follow_the_target(batch):
    pred, target, reference, scales, rgt = batch
    kwargs = dict(segments=[(0, 1200)], mmd_reference=None, rg_target=rgt)
    weights = LossWeights(mse=1.0, rg_penalty=1.0)
    _, implicit = compute_losses(pred, target, weights, **kwargs)
    _, explicit = compute_losses(pred, target, weights, scales=scales, **kwargs)
    assert float(implicit["rg_penalty"]) == float(explicit["rg_penalty"])


def test_zero_weights_skip_the_expensive_losses(batch):
    pred, target, *_ = batch
    total, parts = compute_losses(
        pred, target, LossWeights(mse=1.0), segments=[(0, pred.numel())], mmd_reference=None
    )
    assert float(parts["gue_mmd"]) == 0.0 and float(parts["rg_penalty"]) == 0.0
    assert float(parts["gue_nll"]) == float(gue_nll(pred))  # cheap, still reported
    assert float(total) == float(mse(pred, target))


def test_missing_inputs_are_value_errors(batch):
    pred, target, reference, scales, rgt = batch
    seg = [(0, pred.numel())]
    with pytest.raises(ValueError, match="rg_target"):
        compute_losses(pred, target, LossWeights(rg_penalty=1.0), segments=seg, mmd_reference=None)
    with pytest.raises(ValueError, match="mmd_reference"):
        compute_losses(pred, target, LossWeights(gue_mmd=1.0), segments=seg, mmd_reference=None)
    with pytest.raises(ValueError, match=r"segment \(0, 10\)"):
        compute_losses(
            pred, target, LossWeights(rg_penalty=1.0), segments=[(0, 10)], mmd_reference=None, rg_target=rgt
        )
    with pytest.raises(ValueError, match=r"segment \(5, 5000\)"):
        compute_losses(pred, target, LossWeights(), segments=[(5, 5000)], mmd_reference=None)
    with pytest.raises(ValueError, match="segments is empty"):
        compute_losses(pred, target, LossWeights(), segments=[], mmd_reference=None)
    with pytest.raises(ValueError, match="gue_nll"):
        LossWeights(gue_nll=-1.0)


def test_gradients_finite_near_zero_spacings(batch):
    _, target, reference, scales, rgt = batch
    pred = target.clone()
    pred[::97] = 0.0  # exact zeros
    pred[1::97] = 1e-12
    pred = pred.float().requires_grad_(True)
    total, parts = compute_losses(
        pred,
        target.float(),
        ALL_ON,
        segments=[(0, 600), (600, 1200)],
        mmd_reference=reference.float(),
        rg_target=rgt,
        scales=scales,
        generator=_gen(0),
    )
    assert all(torch.isfinite(v) for v in parts.values())
    total.backward()
    assert torch.isfinite(pred.grad).all()
    assert float(parts["gue_nll"].detach()) > 0.5  # the zeros are penalised, not ignored


def test_fused_mmd_equals_autograd_through_the_kernel_matrices():
    # The one-pass estimate and its hand-written gradient against the plain formula with autograd,
    # in float64, on a sample large enough to span several row blocks.
    gen = _gen(21)
    x = (sample_wigner(700, gen, torch.float64) * 1.2).requires_grad_(True)
    y = sample_wigner(900, gen, torch.float64)
    value = gue_mmd(x, y, bandwidths=(0.2, 0.35), exact=True)
    value.backward()
    x2 = x.detach().clone().requires_grad_(True)
    m, n, total = 700, 900, 0.0
    for sigma in (0.2, 0.35):
        g = -1.0 / (2 * sigma * sigma)
        kxx = (torch.exp(g * (x2[:, None] - x2[None, :]).square()).sum() - m) / (m * (m - 1))
        kyy = (torch.exp(g * (y[:, None] - y[None, :]).square()).sum() - n) / (n * (n - 1))
        kxy = torch.exp(g * (x2[:, None] - y[None, :]).square()).sum() / (m * n)
        total = total + kxx + kyy - 2 * kxy
    (total / 2).backward()
    assert float(value.detach()) == pytest.approx(float(total.detach()) / 2, rel=1e-12, abs=1e-15)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-10, atol=1e-15)


def test_float32_mmd_is_within_float32_rounding_of_the_exact_sum():
    # The training case: 2048 predictions against 2048 reference draws in float32, against the
    # same formula in float64. Each kernel sum has up to 2048^2 terms in [0, 1], summed blockwise
    # in float32 (relative error a few 2^-24 ~ 1e-7 per sum, each sum divided by ~m^2), so the
    # value is off by at most ~1e-6 and the gradient by ~1e-5 of its largest entry.
    gen = _gen(31)
    x = sample_wigner(2048, gen, torch.float64) * 1.1
    y = sample_wigner(2048, gen, torch.float64)
    x64 = x.clone().requires_grad_(True)
    exact = gue_mmd(x64, y)
    exact.backward()
    x32 = x.float().requires_grad_(True)
    value = gue_mmd(x32, y.float())
    value.backward()
    assert value.dtype == torch.float32
    assert abs(float(value.detach()) - float(exact.detach())) < 1e-6
    assert float((x32.grad.double() - x64.grad).abs().max()) < 1e-5 * float(x64.grad.abs().max())


def _exact_and_fast(x, y, bandwidths=(0.2, 0.3, 0.4)):
    out = []
    for exact in (True, False):
        leaf = x.clone().requires_grad_(True)
        value = gue_mmd(leaf, y, bandwidths, max_samples=10**6, exact=exact)
        value.backward()
        out.append((float(value.detach()), leaf.grad))
    return out


@pytest.mark.parametrize(
    "case",
    ["wigner", "two_clusters", "on_box_edges", "wide", "few_boxes"],
)
def test_fast_gauss_transform_matches_the_exact_sums(case):
    # The stated tolerance of the fast path (losses._fgt_mmd), in float64 against the exact
    # double sums: the estimate within 1e-12 (its terms are O(1)), every gradient entry within
    # 1e-9 of the largest. Cases: the training one; two far-apart clusters; values exactly on box
    # edges (multiples of sigma_min from the minimum); a spread of 60 sigma; all in one box.
    gen = _gen(41)
    y = sample_wigner(900, gen, torch.float64)
    x = sample_wigner(700, gen, torch.float64) * 1.2
    if case == "two_clusters":
        x = torch.cat([x[:350] * 0.1, x[350:] * 0.1 + 7.0])
    elif case == "on_box_edges":
        x = (
            float(torch.minimum(x.min(), y.min()))
            + 0.2 * torch.randint(0, 15, (700,), generator=gen).double()
        )
    elif case == "wide":
        x = x * 5.0
    elif case == "few_boxes":
        x, y = 1.0 + 0.05 * x, 1.0 + 0.05 * y
    (exact, g_exact), (fast, g_fast) = _exact_and_fast(x, y)
    assert abs(fast - exact) < 1e-12
    assert float((g_fast - g_exact).abs().max()) < 1e-9 * float(g_exact.abs().max())


def test_fast_path_gradient_passes_gradcheck(monkeypatch):
    # Small inputs, the fast path forced: its hand-written gradient is the derivative of its own value.
    monkeypatch.setattr(losses, "_FGT_MIN_PAIRS", 0)
    gen = _gen(42)
    x = (sample_wigner(12, gen, torch.float64) * 1.3).requires_grad_(True)
    y = sample_wigner(15, gen, torch.float64)
    assert torch.autograd.gradcheck(lambda v: gue_mmd(v, y), (x,), eps=1e-6, atol=1e-8)


def test_outliers_beyond_the_box_limit_take_the_exact_sums():
    gen = _gen(43)
    y = sample_wigner(400, gen, torch.float64)
    x = sample_wigner(400, gen, torch.float64)
    x[0] = 1e4  # a diverging prediction: 5e4 boxes of sigma_min
    assert losses._fgt_mmd(x, y, [len(x)], [len(y)], (0.2, 0.3, 0.4), True) is None
    (exact, g_exact), (fast, g_fast) = _exact_and_fast(x, y)
    assert fast == exact and torch.equal(g_fast, g_exact)


def _segments_mmd_and_one_call_each(pred, reference, segments, seed):
    """compute_losses' gue_mmd over segments of pred and the length-weighted mean of one gue_mmd
    per segment with the same RNG draws: (value, gradient) of each."""
    _, parts = compute_losses(
        pred,
        pred.detach(),
        LossWeights(gue_mmd=1.0),
        segments=segments,
        mmd_reference=reference,
        generator=_gen(seed),
    )
    (got,) = torch.autograd.grad(parts["gue_mmd"], pred)
    replay = _gen(seed)
    total = sum(b - a for a, b in segments)
    want = sum((b - a) * gue_mmd(pred[a:b], reference, generator=replay) for a, b in segments) / total
    (want_grad,) = torch.autograd.grad(want, pred)
    return (float(parts["gue_mmd"]), got), (float(want), want_grad)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("sizes", [[2000, 2100, 1900, 2500, 2200], [2000, 100, 2500]])
def test_the_segments_mmd_in_one_transform_equals_one_call_per_segment(sizes, dtype):
    # Five segments of a mini-batch step go through one fast Gauss transform; with a segment too
    # small for it (100 x 2048 pairs) every segment takes the exact sums. Value and gradient
    # match one gue_mmd per segment (the same RNG draws) to float64 rounding; in float32 (the
    # step's dtype: the compiled transform's float entry) to float32 rounding.
    gen = _gen(5)
    pred = (0.2 + sample_wigner(sum(sizes), gen, torch.float64)).to(dtype).requires_grad_()
    reference = sample_wigner(8192, gen, torch.float64).to(dtype)
    bounds = np.cumsum([0, *sizes])
    segments = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
    (got, got_grad), (want, want_grad) = _segments_mmd_and_one_call_each(pred, reference, segments, 6)
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    assert got == pytest.approx(want, rel=tol, abs=1e-13)
    torch.testing.assert_close(
        got_grad, want_grad, rtol=tol * 10, atol=tol * 1e-4 * float(want_grad.abs().max())
    )
    assert want > 1e-4  # the shift by 0.2 makes every segment differ from the reference


def test_segments_with_gaps_between_them_take_only_their_own_predictions():
    # A step's segments that do not tile its predictions (a node outside every segment): the MMD
    # sees the segments' values alone, as one gue_mmd per segment does.
    gen = _gen(11)
    pred = (0.2 + sample_wigner(5000, gen)).requires_grad_()
    segments = [(0, 1500), (1700, 3000), (3000, 4990)]
    (got, got_grad), (want, want_grad) = _segments_mmd_and_one_call_each(
        pred, sample_wigner(8192, gen), segments, 12
    )
    assert got == pytest.approx(want, rel=1e-5)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-4, atol=1e-9 * float(want_grad.abs().max()))
    assert not got_grad[1500:1700].any() and not got_grad[4990:].any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("at", [0, 3999])
def test_a_diverged_prediction_gives_a_non_finite_mmd_not_an_error(bad, at, dtype):
    # A diverging model's NaN or infinite prediction: the step's losses come out non-finite (the
    # training loop then reports the trial diverged) instead of raising from the boxes' count.
    gen = _gen(13)
    pred = (0.2 + sample_wigner(4000, gen)).to(dtype)
    pred[at] = bad
    pred.requires_grad_()
    total, parts = compute_losses(
        pred,
        pred.detach().nan_to_num(1.0, 1.0, 1.0),
        LossWeights(gue_mmd=1.0),
        segments=[(0, 2000), (2000, 4000)],
        mmd_reference=sample_wigner(8192, gen).to(dtype),
        generator=_gen(14),
    )
    assert not math.isfinite(float(parts["gue_mmd"])) and not math.isfinite(float(total))
    total.backward()  # no error either


@pytest.mark.skipif(fused.library() is None, reason="needs g++ to build trainer/csrc/fgt.cpp")
@pytest.mark.parametrize("case", ["segments", "one_box", "spread", "too_wide"])
def test_the_float_entry_is_the_double_transform_cast(case):
    # fused.fgt_mmd_float (float32 values; the boxes found in C++) against fused.fgt_mmd on the
    # same values in float64 at the boxes _fgt_mmd finds, then cast and weighted as
    # _GaussianMMD's float32 ops do: bit for bit. Past _FGT_MAX_BOXES it declines (None).
    gen = _gen(15)
    sizes, y_sizes = [2000, 2100, 1900, 2500, 2200], [2048] * 5
    x = torch.cat([sample_wigner(s, gen) * 1.1 for s in sizes])
    y = sample_wigner(sum(y_sizes), gen)
    if case == "one_box":
        x, y = 1.0 + 0.02 * x, 1.0 + 0.02 * y
    elif case == "spread":
        x = x * 4.0
    elif case == "too_wide":
        x[17] = 1e3
    bandwidths = (0.2, 0.3, 0.4)
    constants = losses._fgt_constants(bandwidths, x.device)
    w = torch.tensor([0.1, 0.3, 0.2, 0.25, 0.15])
    got = fused.fgt_mmd_float(x, y, sizes, y_sizes, constants, 0.2, losses._FGT_MAX_BOXES, w, True)
    if case == "too_wide":
        assert got is None
        return
    x64, y64 = x.double(), y.double()
    lo = float(torch.minimum(x64.min(), y64.min()))
    boxes = int((float(torch.maximum(x64.max(), y64.max())) - lo) // 0.2) + 1
    value, g = fused.fgt_mmd(x64, y64, sizes, y_sizes, constants, 0.2, lo, boxes, True)
    assert torch.equal(got[0], value.float())
    assert torch.equal(got[1], g.float() * torch.repeat_interleave(w, torch.tensor(sizes)))


@pytest.mark.skipif(fused.library() is None, reason="needs g++ to build trainer/csrc/fgt.cpp")
@pytest.mark.parametrize("case", ["segments", "one_box", "spread", "odd_sizes"])
def test_the_compiled_transform_equals_the_torch_one(case):
    # csrc/fgt.cpp against _fgt_mmd's torch expansions (fused.eager() turns the kernel off), in
    # float64: the same estimates and gradients up to summation order. Cases: five segments of a
    # step; every value in one box; a spread wider than the translation's reach (K_max boxes);
    # segments whose sizes are not multiples of a vector's lanes (the power sums' tail, one
    # value at a time, after the values taken a vector's lanes at a time).
    gen = _gen(8)
    sizes, y_sizes = [2000, 2100, 1900, 2500, 2200], [2048] * 5
    if case == "odd_sizes":
        sizes, y_sizes = [2001, 2103, 1898, 2502, 7], [2047, 2049, 2050, 5, 2051]
    x = torch.cat([sample_wigner(s, gen, torch.float64) * 1.1 for s in sizes])
    y = sample_wigner(sum(y_sizes), gen, torch.float64)
    if case == "one_box":
        x, y = 1.0 + 0.02 * x, 1.0 + 0.02 * y
    elif case == "spread":
        x = x * 4.0
    got_value, got_grad = losses._fgt_mmd(x, y, sizes, y_sizes, (0.2, 0.3, 0.4), True)
    with fused.eager():
        want_value, want_grad = losses._fgt_mmd(x, y, sizes, y_sizes, (0.2, 0.3, 0.4), True)
    torch.testing.assert_close(got_value, want_value, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-10, atol=1e-12 * float(want_grad.abs().max()))
    value_only, no_grad = losses._fgt_mmd(x, y, sizes, y_sizes, (0.2, 0.3, 0.4), False)
    assert no_grad is None and torch.equal(value_only, got_value)
