"""Random-matrix (GUE) statistics of unfolded spacings: the Wigner surmise, an exact sampler,
the KS distance from the surmise, and block-sum variances across scales (MATH.md §4.1, §4.5).

Torch functions keep the autograd graph, because the losses in `trainer.losses` are built
from them; numpy functions are for evaluation only.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import erf

#: Normalising constant of the beta = 2 Wigner surmise, 32 / pi^2.
WIGNER_NORM = 32.0 / math.pi**2
#: Variance of the surmise, 3 pi / 8 - 1 (MATH.md §4.1).
WIGNER_VARIANCE = 3.0 * math.pi / 8.0 - 1.0
#: Spacings below this are treated as this in `wigner_logpdf` (see there).
LOGPDF_MIN_SPACING = 1e-6


def wigner_pdf(s: torch.Tensor) -> torch.Tensor:
    """Wigner surmise density for beta = 2: p_W(s) = (32/pi^2) s^2 exp(-4 s^2 / pi).

    Args:
        s: spacings in unfolded units (mean spacing 1), any shape; negative values are
            outside the support and give p_W(s) > 0 by the formula, so pass spacings only.

    Returns:
        Densities, same shape and dtype as ``s``.
    """
    return WIGNER_NORM * s.square() * torch.exp(-4.0 / math.pi * s.square())


def wigner_logpdf(s: torch.Tensor) -> torch.Tensor:
    """log p_W(s), with s clamped from below at LOGPDF_MIN_SPACING (1e-6).

    Why the clamp: log p_W(0) = -inf, so one zero (or underflowed float32) predicted spacing
    would make `gue_nll` infinite and its gradient NaN. Clamped, a zero spacing costs
    -log p_W(1e-6) = 26.5 nats, a large finite loss, and the gradient is finite everywhere
    (zero below the clamp, where the MSE term still acts). Real unfolded spacings at the
    heights of the Odlyzko table are above 0.01, so the clamp never touches real data.

    Args:
        s: spacings in unfolded units, any shape.

    Returns:
        log densities, same shape and dtype as ``s``.
    """
    s = s.clamp(min=LOGPDF_MIN_SPACING)
    return math.log(WIGNER_NORM) + 2.0 * torch.log(s) - 4.0 / math.pi * s.square()


def wigner_cdf(s: np.ndarray | float) -> np.ndarray:
    """Wigner surmise CDF, F_W(s) = erf(2s/sqrt(pi)) - (4s/pi) exp(-4 s^2/pi), 0 for s <= 0.

    Args:
        s: spacings in unfolded units (numpy array or scalar).

    Returns:
        float64 array of the same shape.
    """
    s = np.clip(np.asarray(s, dtype=np.float64), 0.0, None)
    return erf(2.0 * s / math.sqrt(math.pi)) - 4.0 * s / math.pi * np.exp(-4.0 * s**2 / math.pi)


def sample_wigner(
    n: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Exact samples of the Wigner surmise: s = sqrt(pi/8) * |g| with g ~ N(0, I_3).

    (4 s^2 / pi = |g|^2 / 2 is Gamma(3/2)-distributed, which is exactly p_W; MATH.md §4.1.)

    Args:
        n: number of samples.
        generator: torch generator for reproducibility (default: the global RNG); it must live
            on ``device``.
        dtype: floating dtype of the result (default float32).
        device: device of the result (default: the generator's device, else CPU).

    Returns:
        Tensor of shape (n,).
    """
    if device is None and generator is not None:
        device = generator.device
    g = torch.randn(n, 3, generator=generator, dtype=dtype, device=device)
    return math.sqrt(math.pi / 8.0) * torch.linalg.vector_norm(g, dim=1)


def ks_wigner(s: np.ndarray | torch.Tensor) -> float:
    """Kolmogorov–Smirnov distance sup |F_emp - F_W| of a sample of spacings from the surmise.

    Args:
        s: 1-D sample of spacings in unfolded units (numpy array or tensor; tensors are
            detached and copied to the CPU).

    Returns:
        The KS statistic in [0, 1].
    """
    if isinstance(s, torch.Tensor):
        s = s.detach().cpu().double().numpy()
    x = np.sort(np.asarray(s, dtype=np.float64).ravel())
    if x.size == 0:
        raise ValueError("ks_wigner: empty sample")
    if not np.all(np.isfinite(x)):
        raise ValueError("ks_wigner: sample contains NaN or inf")
    f = wigner_cdf(x)
    n = x.size
    above = np.arange(1, n + 1) / n - f
    below = f - np.arange(0, n) / n
    return float(max(above.max(), below.max()))


def block_sum_variance(s: torch.Tensor, scales: list[int] | tuple[int, ...]) -> torch.Tensor:
    """Variance of the sum of L consecutive spacings, for each L in ``scales``.

    Uses all sliding windows: the sum of s_n .. s_{n+L-1} is x_{n+L} - x_n, so this is
    Var(x_{n+L} - x_n) of MATH.md §4.5 (the zeros saturate near 2 Var(delta) ~ 0.2 there).
    Sliding windows rather than disjoint blocks because they use every one of the n - L + 1
    windows (a lower-variance estimate, which matters at the large L where only n / L disjoint
    blocks exist) and cost O(n) per scale through one cumulative sum.

    The cumulative sum runs in float64 on mean-centred spacings: a float32 cumsum over 2e6
    spacings reaches 2e6, where float32 resolves only 0.25, which would swamp variances ~0.2.
    The variance is the population one (divide by the number of windows).

    Args:
        s: 1-D spacings in unfolded units, length n > max(scales).
        scales: block lengths L (positive integers, in zeros).

    Returns:
        Tensor of shape (len(scales),), dtype of ``s``, differentiable in ``s``.
    """
    if s.dim() != 1:
        raise ValueError(f"block_sum_variance: spacings must be 1-D, got shape {tuple(s.shape)}")
    n = s.shape[0]
    if len(scales) == 0:
        raise ValueError("block_sum_variance: no scales given")
    for L in scales:
        if int(L) != L or L < 1 or L >= n:
            raise ValueError(
                f"block_sum_variance: scale L={L} must be an integer in [1, {n - 1}] for {n} spacings"
            )
    x = s.double()
    c = torch.cat([x.new_zeros(1), torch.cumsum(x - x.mean().detach(), dim=0)])
    out = []
    for L in scales:
        sums = c[L:] - c[:-L]
        out.append(torch.mean((sums - sums.mean()).square()))
    return torch.stack(out).to(s.dtype)


def default_scales(n: int, max_log2: int = 10) -> list[int]:
    """Block lengths [2, 4, ..., 2^K] for ``block_sum_variance`` on n spacings.

    K is the largest integer <= max_log2 with 2^K <= n / 16, so the largest scale still
    spans at least 16 disjoint blocks and its variance is not noise.

    Args:
        n: number of spacings.
        max_log2: upper bound on K (default 10, i.e. L up to 1024 as in MATH.md §4.5).

    Returns:
        The scales; empty when n < 32.
    """
    k = min(max_log2, int(math.floor(math.log2(n / 16))) if n >= 32 else 0)
    return [2**i for i in range(1, k + 1)]
