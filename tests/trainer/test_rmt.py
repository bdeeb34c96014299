"""trainer.rmt against independent computations: scipy quadrature, scipy's KS test, hand sums."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from trainer.rmt import (
    LOGPDF_MIN_SPACING,
    WIGNER_VARIANCE,
    block_sum_variance,
    default_scales,
    ks_wigner,
    sample_wigner,
    wigner_cdf,
    wigner_logpdf,
    wigner_pdf,
)


def _pdf(s: float) -> float:
    return float(wigner_pdf(torch.tensor(s, dtype=torch.float64)))


def test_pdf_moments_by_quadrature():
    # MATH.md §4.1: normalisation 1, mean 1, variance 3 pi / 8 - 1 = 0.178097.
    norm = integrate.quad(_pdf, 0, np.inf, epsabs=1e-14)[0]
    mean = integrate.quad(lambda s: s * _pdf(s), 0, np.inf, epsabs=1e-14)[0]
    second = integrate.quad(lambda s: s * s * _pdf(s), 0, np.inf, epsabs=1e-14)[0]
    assert norm == pytest.approx(1.0, abs=1e-12)
    assert mean == pytest.approx(1.0, abs=1e-12)
    assert second - mean**2 == pytest.approx(0.178097, abs=5e-7)
    assert WIGNER_VARIANCE == pytest.approx(second - mean**2, abs=1e-12)


@pytest.mark.parametrize("s", [0.05, 0.1, 0.5, 0.963907, 1.0, 2.0, 3.0])
def test_cdf_is_integral_of_pdf(s):
    assert float(wigner_cdf(s)) == pytest.approx(integrate.quad(_pdf, 0, s, epsabs=1e-15)[0], abs=1e-13)


def test_cdf_limits_and_median():
    assert float(wigner_cdf(0.0)) == 0.0
    assert float(wigner_cdf(-1.0)) == 0.0
    assert float(wigner_cdf(10.0)) == pytest.approx(1.0, abs=1e-15)
    assert float(wigner_cdf(0.963907)) == pytest.approx(0.5, abs=1e-6)  # median from MATH.md §4.1


def test_logpdf_is_log_of_pdf_above_the_clamp():
    s = torch.tensor([1e-6, 1e-3, 0.1, 0.5, 1.0, 2.5, 4.0], dtype=torch.float64)
    assert torch.allclose(wigner_logpdf(s), torch.log(wigner_pdf(s)), rtol=0, atol=1e-12)


def test_logpdf_of_zero_is_large_finite_with_finite_gradient():
    s = torch.tensor([0.0, 1e-12, LOGPDF_MIN_SPACING / 2, 1e-3], requires_grad=True)
    lp = wigner_logpdf(s)
    assert torch.isfinite(lp).all()
    expected = math.log(32 / math.pi**2) + 2 * math.log(LOGPDF_MIN_SPACING)
    assert float(lp[0].detach()) == pytest.approx(expected, rel=1e-5)
    assert -float(lp[0].detach()) > 20.0  # a zero spacing costs more than any plausible real one
    lp.sum().backward()
    assert torch.isfinite(s.grad).all()
    assert float(s.grad[3]) == pytest.approx(2 / 1e-3, rel=1e-3)  # d/ds 2 log s dominates near 0


def test_sampler_matches_surmise():
    gen = torch.Generator().manual_seed(1)
    s = sample_wigner(200_000, generator=gen, dtype=torch.float64).numpy()
    n = s.size
    assert s.min() > 0
    assert abs(s.mean() - 1.0) < 4 * math.sqrt(WIGNER_VARIANCE / n)
    assert abs(s.var() - WIGNER_VARIANCE) < 0.003
    ks = ks_wigner(s)
    assert ks < 1.63 / math.sqrt(n)  # the 1% level of the KS distribution for iid samples
    # Our KS statistic against scipy's independent implementation.
    assert ks == pytest.approx(stats.kstest(s, wigner_cdf).statistic, abs=1e-12)


def test_sampler_dtype_device_and_reproducibility():
    a = sample_wigner(5, generator=torch.Generator().manual_seed(3))
    b = sample_wigner(5, generator=torch.Generator().manual_seed(3))
    assert a.dtype == torch.float32 and a.shape == (5,)
    assert torch.equal(a, b)


def test_ks_of_exponential_is_the_population_distance():
    rng = np.random.default_rng(0)
    x = rng.exponential(size=100_000)
    grid = np.linspace(0, 8, 80_001)
    population = np.max(np.abs((1 - np.exp(-grid)) - wigner_cdf(grid)))
    assert ks_wigner(torch.from_numpy(x)) == pytest.approx(population, abs=0.006)
    assert population > 0.2


def test_ks_rejects_bad_samples():
    with pytest.raises(ValueError, match="empty"):
        ks_wigner(np.array([]))
    with pytest.raises(ValueError, match="NaN"):
        ks_wigner(np.array([1.0, np.nan]))


def test_block_sum_variance_hand_example():
    s = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], dtype=torch.float64)
    # L=1: values 1..6, variance 35/12.  L=2: sums 3,5,7,9,11 -> variance 8.
    # L=3: sums 6,9,12,15 -> deviations +-4.5, +-1.5 -> variance 11.25.
    v = block_sum_variance(s, [1, 2, 3])
    assert v.tolist() == pytest.approx([35 / 12, 8.0, 11.25], abs=1e-12)
    # A perfectly rigid sequence: every pair sums to 2, so V(2) = 0 while V(1) = 1.
    rigid = torch.tensor([0.0, 2.0] * 5, dtype=torch.float64)
    assert block_sum_variance(rigid, [1, 2, 4]).tolist() == pytest.approx([1.0, 0.0, 0.0], abs=1e-12)


def test_block_sum_variance_float32_long_sequence_is_accurate():
    # Near 2e5 spacings a naive float32 cumsum loses ~3 digits; ours must match float64 numpy.
    rng = np.random.default_rng(2)
    s = rng.gamma(4.0, 0.25, size=200_000)
    scales = [2, 64, 1024]
    expected = [np.var(np.convolve(s, np.ones(L), mode="valid")) for L in scales]
    got = block_sum_variance(torch.from_numpy(s).float(), scales)
    assert got.dtype == torch.float32
    assert got.tolist() == pytest.approx(expected, rel=1e-5)


def test_block_sum_variance_gradient():
    s = torch.rand(40, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.5
    s.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: block_sum_variance(x, [2, 4, 8]), (s,))


def test_block_sum_variance_rejects_bad_scales():
    s = torch.ones(10)
    with pytest.raises(ValueError, match="L=10"):
        block_sum_variance(s, [2, 10])
    with pytest.raises(ValueError, match="no scales"):
        block_sum_variance(s, [])
    with pytest.raises(ValueError, match="1-D"):
        block_sum_variance(torch.ones(2, 5), [2])


def test_default_scales():
    assert default_scales(2_001_052) == [2**i for i in range(1, 11)]
    assert default_scales(1000) == [2, 4, 8, 16, 32]  # 64 > 1000 / 16
    assert default_scales(1000, max_log2=3) == [2, 4, 8]
    assert default_scales(32) == [2]
    assert default_scales(31) == []
