"""The four training losses on predicted unfolded spacings and their weighted total (MATH.md §0,
§4.1, §4.5, §6).

* ``mse``: accuracy against the true next spacing.
* ``gue_nll``: negative log-likelihood under the beta = 2 Wigner surmise.
* ``gue_mmd``: unbiased Gaussian-kernel MMD^2 against a reference sample (GUE draws, or held-out
  real spacings at the same height), averaged over bandwidths.
* ``rg_penalty``: mismatch of log block-sum variances across scales L = 2, 4, ..., 2^K with the
  true spacings' values, the long-range rigidity that the two GUE priors cannot see.

A training step passes the predicted spacings of one mini-batch (or the whole graph) with the
contiguous runs (segments) it contains; the pointwise losses use every node, the distributional
and multi-scale ones are computed per segment, so a run boundary never joins unrelated spacings.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from trainer import fused
from trainer.rmt import block_sum_variance, wigner_logpdf

LOSS_NAMES = ("mse", "gue_nll", "gue_mmd", "rg_penalty")


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between predicted and true spacings (unfolded units squared).

    Args:
        pred: predicted spacings, any shape.
        target: true spacings, same shape.
    """
    if pred.shape != target.shape:
        raise ValueError(f"mse: pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    return torch.mean((pred - target).square())


def gue_nll(pred: torch.Tensor) -> torch.Tensor:
    """-mean log p_W(pred): negative log-likelihood (nats per spacing) under the Wigner surmise.

    Spacings below 1e-6 count as 1e-6 (see ``trainer.rmt.wigner_logpdf``).

    Args:
        pred: predicted spacings in unfolded units, any shape.
    """
    return -torch.mean(wigner_logpdf(pred))


def _draw(n: int, max_samples: int, generator: torch.Generator | None) -> torch.Tensor | None:
    """The indices of a subsample of max_samples of n values without replacement (on the
    generator's device), or None when n <= max_samples (all of them, no draw)."""
    if n <= max_samples:
        return None
    # Without replacement: a repeated draw would put a kernel value of exactly 1 into the
    # "i != i'" sums and bias the unbiased estimator upwards.
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randperm(n, generator=generator, device=gen_device)[:max_samples]


def _subsample(x: torch.Tensor, max_samples: int, generator: torch.Generator | None) -> torch.Tensor:
    idx = _draw(x.shape[0], max_samples, generator)
    return x if idx is None else x[idx.to(x.device)]


def gue_mmd(
    pred: torch.Tensor,
    reference: torch.Tensor,
    bandwidths: tuple[float, ...] = (0.2, 0.3, 0.4),
    max_samples: int = 2048,
    generator: torch.Generator | None = None,
    exact: bool = False,
) -> torch.Tensor:
    """Unbiased MMD^2 (Gretton et al. 2012, Lemma 6; MATH.md §6) between two 1-D samples with the
    Gaussian kernel k(a, b) = exp(-(a - b)^2 / (2 sigma^2)), averaged (not summed) over the
    bandwidths so its scale does not depend on how many are given.

    Each side is first subsampled without replacement to at most ``max_samples`` values, so
    memory and time are bounded whatever the number of nodes (2e6 in full-batch).
    The estimate can be slightly negative; its expectation is the population MMD^2.

    The kernel sums are computed by a 1-D fast Gauss transform (``_fgt_sums``: O((m + n) p)
    instead of O(m n), in float64) when both sides are large enough for it to pay; its error
    is below 1e-11 of each kernel sum's number of terms, i.e. far below float32 rounding (the
    tests bound it against the exact sums). ``exact=True`` (or a small sample, or values spread
    over more than ``_FGT_MAX_BOXES`` kernel widths) takes the exact O(m n) sums.

    Args:
        pred: predicted spacings, 1-D, at least 2 values; gradients flow through it.
        reference: reference spacings, 1-D, at least 2 values (GUE samples from
            ``trainer.rmt.sample_wigner`` or held-out real spacings).
        bandwidths: kernel widths sigma in unfolded units (default 0.2, 0.3, 0.4: the
            sensitive range measured in MATH.md §6).
        max_samples: subsample size per side (default 2048).
        generator: torch generator for the subsampling (default: the global RNG).
        exact: always sum the m x n kernel terms directly (default False: the fast transform
            where it pays).

    Returns:
        Scalar tensor, dtype of ``pred`` (float32 when ``pred`` is half precision).
    """
    return _weighted_mmd(pred, [1.0], reference, bandwidths, max_samples, generator, exact)


def _weighted_mmd(
    values, weights, reference, bandwidths, max_samples, generator, exact=False, sizes=None
) -> torch.Tensor:
    """sum_s weights[s] gue_mmd(run s, reference) over the runs values.split(sizes) (default: one
    run, all of values): each run and its own reference subsample drawn in turn (the RNG draws of
    one gue_mmd call per run), then one _GaussianMMD for all.

    Where no run is subsampled (a mini-batch step's runs are shorter than max_samples), the runs
    go in as values itself, not as slices joined again; the reference's subsamples are one index
    of it. The same values, draws and gradients as a slice, a subsample and a join per run."""
    if reference.dim() != 1 or values.dim() != 1:
        raise ValueError("gue_mmd: pred and reference must be 1-D")
    sizes = [values.shape[0]] if sizes is None else sizes
    for size in sizes:
        if size < 2 or reference.shape[0] < 2:
            raise ValueError(
                f"gue_mmd: need at least 2 values per side, got {size} predicted and {reference.shape[0]} reference"
            )
    if not bandwidths:
        raise ValueError("gue_mmd: no bandwidths given")
    # Half precision (bf16 autocast) resolves spacings only to ~1%, too coarse for kernel
    # differences of MMD^2 ~ 1e-4, so those are computed in float32.
    dtype = torch.promote_types(values.dtype, torch.float32)
    ref = reference.to(device=values.device, dtype=dtype)
    runs = values.split(sizes)
    xs, picks = [], []
    for run in runs:
        xs.append(_subsample(run, max_samples, generator).to(dtype))
        picks.append(_draw(ref.shape[0], max_samples, generator))
    if all(a.shape == b.shape for a, b in zip(xs, runs, strict=True)):
        x = values.to(dtype)
    else:
        x = xs[0] if len(xs) == 1 else torch.cat(xs)
    if picks[0] is None:
        y = ref if len(runs) == 1 else ref.repeat(len(runs))
    else:
        y = ref[torch.cat(picks).to(ref.device)]
    sizes_x, sizes_y = [len(v) for v in xs], [len(ref) if p is None else len(p) for p in picks]
    return _GaussianMMD.apply(
        x, y, sizes_x, sizes_y, tuple(weights), tuple(float(b) for b in bandwidths), exact
    )


# Rows of one side per block of the kernel sums: blocks of 64 rows x up to 2048 columns x the
# bandwidths (1.5 MiB of float32 for three) stay in cache (measured: 64 beats 128 and 256).
_MMD_BLOCK = 64


def _kernel_sums(a: torch.Tensor, b: torch.Tensor | None, gammas: tuple[float, ...], grad: bool):
    """For each gamma = -1/(2 sigma^2): S = sum_ij exp(gamma (a_i - b_j)^2), and (when grad) the
    rows dS/da_i = 2 gamma sum_j (a_i - b_j) exp(gamma (a_i - b_j)^2), as tensors [G] and [G, len(a)].

    All bandwidths share one pass over each block (one difference, one square, one exp of the
    stacked [G, rows, cols] block). b = None means b = a: the kernel matrix is symmetric, so only
    its upper block triangle is built (about half the work); the diagonal blocks are summed once
    and every off-diagonal block twice, and its (odd) gradient terms go to both its rows and, with
    the sign flipped, its columns. Equal to the full double sum up to the order of float summation.
    """
    symmetric = b is None
    gam = torch.tensor(gammas, dtype=a.dtype, device=a.device)[:, None, None]
    sums = a.new_zeros(len(gammas))
    grads = a.new_zeros(len(gammas), a.shape[0]) if grad else None
    for lo in range(0, a.shape[0], _MMD_BLOCK):
        hi = min(lo + _MMD_BLOCK, a.shape[0])
        cols = a[lo:] if symmetric else b
        diff = a[lo:hi, None] - cols[None, :]
        k = torch.mul(diff.square(), gam).exp_()  # [G, rows, cols]
        if symmetric:  # [:, :, : hi - lo] is the diagonal block, the rest lies above it
            sums += 2.0 * k.sum(dim=(1, 2)) - k[:, :, : hi - lo].sum(dim=(1, 2))
        else:
            sums += k.sum(dim=(1, 2))
        if grad:
            k.mul_(diff)  # the terms (a_i - b_j) k_ij
            grads[:, lo:hi] += k.sum(dim=2)
            if symmetric:
                grads[:, hi:] -= k[:, :, hi - lo :].sum(dim=1)
    if grad:
        grads *= 2.0 * gam[:, :, 0]
    return sums, grads


def _direct_mmd(x: torch.Tensor, y: torch.Tensor, bandwidths: tuple[float, ...], grad: bool):
    """(gue_mmd's estimate, its gradient in x or None) from the exact kernel sums, in x's dtype."""
    m, n = x.shape[0], y.shape[0]
    gammas = tuple(-1.0 / (2.0 * s * s) for s in bandwidths)
    sxx, gxx = _kernel_sums(x, None, gammas, grad)
    syy, _ = _kernel_sums(y, None, gammas, False)
    sxy, gxy = _kernel_sums(x, y, gammas, grad)
    total = x.new_zeros(())
    g = x.new_zeros(x.shape) if grad else None
    for i in range(len(bandwidths)):
        # The diagonal of each self-kernel is exactly exp(0) = 1: subtracting m (n) leaves the
        # sum over i != i' without building a mask.
        total = total + (sxx[i] - m) / (m * (m - 1)) + (syy[i] - n) / (n * (n - 1)) - 2.0 * sxy[i] / (m * n)
        if grad:
            # d/dx_i of sum_{i,i'} k(x_i - x_i') is twice the row term (k' is odd).
            g = g + 2.0 * gxx[i] / (m * (m - 1)) - 2.0 * gxy[i] / (m * n)
    return total / len(bandwidths), (g / len(bandwidths) if grad else None)


# The fast Gauss transform (Greengard & Strain 1991) in 1-D, on boxes of width sigma_min. The
# sources' Hermite expansions and the targets' Taylor expansions are both cut after _FGT_TERMS
# terms; the scaled box half-width (sigma_min / 2) / (sqrt 2 sigma) <= 0.354 makes the cut cost
# ~1e-14 of each kernel sum's number of terms and ~1e-12 of each gradient row's scale (measured
# against the exact sums in tests/trainer/test_losses.py).
_FGT_TERMS = 16
# Box offsets whose points lie more than 8.6 sigma_max apart are dropped: exp(-8.6^2 / 2) < 1e-16.
_FGT_CUTOFF_SIGMAS = 8.6
# The exact sums below this many x-y pairs (the transform's fixed cost of ~30 small ops;
# measured break-even near 150 x 150) and when the values span more than _FGT_MAX_BOXES boxes
# (a diverging model's outliers: the translation costs O(boxes x offsets x terms^2)).
_FGT_MIN_PAIRS = 150 * 150
_FGT_MAX_BOXES = 512


def _hermite_functions(s: torch.Tensor, count: int) -> torch.Tensor:
    """h_k(s) = (-1)^k d^k/ds^k exp(-s^2) = H_k(s) exp(-s^2) for k < count, on a new last axis."""
    out = [torch.exp(-s * s)]
    if count > 1:
        out.append(2.0 * s * out[0])
    for k in range(1, count - 1):
        out.append(2.0 * s * out[k] - 2.0 * k * out[k - 1])
    return torch.stack(out, dim=-1)


@functools.lru_cache(maxsize=16)
def _fgt_constants(bandwidths: tuple[float, ...], device: torch.device):
    """(delta^-a [G, p], 1/a! [p], T [G, J, p, p], K) for boxes of width min(bandwidths).

    T[g, j, a, b] = (-1)^b / b! h_{a+b}(k width / delta_g) moves a source box's Hermite moments
    (index a) to Taylor coefficients (index b) of a target box k = K - j boxes to its right.
    """
    p, f64 = _FGT_TERMS, torch.float64
    width = min(bandwidths)
    delta = torch.tensor([math.sqrt(2.0) * s for s in bandwidths], dtype=f64)
    order = torch.arange(p, dtype=f64)
    inv_fact = torch.tensor([1.0 / math.factorial(a) for a in range(p)], dtype=f64)
    K = math.ceil(_FGT_CUTOFF_SIGMAS * max(bandwidths) / width) + 1
    k = torch.arange(K, -K - 1, -1, dtype=f64)
    h = _hermite_functions(k[None, :] * width / delta[:, None], 2 * p - 1)  # [G, J, 2p - 1]
    ab = torch.arange(p)
    T = h[:, :, ab[:, None] + ab[None, :]] * (inv_fact * (1.0 - 2.0 * (ab % 2)))
    return (delta[:, None] ** -order).to(device), inv_fact.to(device), T.to(device), K


def _fgt_mmd(
    x: torch.Tensor, y: torch.Tensor, x_sizes: list[int], y_sizes: list[int], bandwidths, grad: bool
):
    """_direct_mmd of S segments at once by the fast Gauss transform, in float64 (returned in
    x's dtype): x and y hold the segments' values one after another (x_sizes, y_sizes), and the
    result is (the S estimates [S], each x value's gradient of its own segment's estimate), or
    None when the values spread over more than _FGT_MAX_BOXES boxes. One transform for all
    segments: a mini-batch step's ~5 segments cost one call's ~30 small ops, not five calls'.

    With delta = sqrt(2) sigma, k(t - s) = exp(-((t - s) / delta)^2). For sources s in a box of
    centre c, k(t - s) = sum_a ((s - c) / delta)^a / a! h_a((t - c) / delta) (Hermite
    expansion). Each box's moments A_a = sum_s ((s - c) / delta)^a / a! become, in a target box
    of centre c', the Taylor coefficients B_b = (-1)^b / b! sum_a A_a h_{a+b}((c' - c) / delta)
    of the field F(t) = sum_s k(t - s) = sum_b B_b ((t - c') / delta)^b. The move depends only
    on the box offset (one matmul over a sliding window of boxes). A kernel sum over targets is
    then sum over boxes and b of B_b times the targets' power sums; the gradient needs F' at
    each x, evaluated once for the whole estimate (it is linear in the fields). Each segment has
    its own moments on the common boxes.
    """
    p, f64, dev = _FGT_TERMS, torch.float64, x.device
    S, G = len(x_sizes), len(bandwidths)
    m = torch.tensor(x_sizes, dtype=f64, device=dev)[:, None]  # [S, 1]
    n = torch.tensor(y_sizes, dtype=f64, device=dev)[:, None]
    x64, y64 = x.detach().to(f64), y.detach().to(f64)
    width = min(bandwidths)
    lo, hi = float(torch.minimum(x64.min(), y64.min())), float(torch.maximum(x64.max(), y64.max()))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None  # a diverged model's values: the exact sums give the non-finite estimate
    boxes = int((hi - lo) // width) + 1
    if boxes > _FGT_MAX_BOXES:
        return None
    constants = _fgt_constants(bandwidths, dev)
    out = fused.fgt_mmd(x64, y64, x_sizes, y_sizes, constants, width, lo, boxes, grad)
    if out is not None:  # the same transform in C++ (csrc/fgt.cpp): ~40 small ops become one call
        value, g = out
        return value.to(x.dtype), (g.to(x.dtype) if grad else None)
    scale, inv_fact, T, K_max = constants

    def power_sums(v, sizes):
        # each value's segment-and-box row, its powers (v - c)^a [len, p], their sums [S, boxes, p]
        b = ((v - lo) / width).floor().clamp_(0, boxes - 1).long()
        u = v - (lo + (b.to(f64) + 0.5) * width)
        powers = torch.cumprod(torch.cat([torch.ones_like(u)[:, None], u[:, None].expand(-1, p - 1)], 1), 1)
        row = b + boxes * torch.repeat_interleave(
            torch.arange(S, device=dev), torch.tensor(sizes, device=dev)
        )
        sums = torch.zeros(S * boxes, p, dtype=f64, device=dev).index_add_(0, row, powers)
        return row, powers, sums.view(S, boxes, p)

    rx, px, sx = power_sums(x64, x_sizes)
    _, _, sy = power_sums(y64, y_sizes)
    A = torch.stack([sx, sy])[:, :, None] * (inv_fact * scale)[None, None, :, None, :]  # [2, S, G, boxes, p]
    K = min(boxes - 1, K_max)
    J = 2 * K + 1
    T = T[:, K_max - K : K_max + K + 1].permute(0, 2, 1, 3).reshape(G, p * J, p)  # rows (a, j)
    window = torch.nn.functional.pad(A, (0, 0, K, K)).unfold(3, J, 1)  # [2, S, G, boxes, p, J]
    B = torch.matmul(window.reshape(2, S, G, boxes, p * J), T) * scale[None, None, :, None, :]
    # B[s, k, g, c, b]: the field of source set s (x, y) of segment k in box c in powers (t - c)^b.
    sxx = (B[0] * sx[:, None]).sum((2, 3))  # [S, G]
    sxy = (B[1] * sx[:, None]).sum((2, 3))
    syy = (B[1] * sy[:, None]).sum((2, 3))
    dt = x.dtype
    value = (sxx - m) / (m * (m - 1)) + (syy - n) / (n * (n - 1)) - 2.0 * sxy / (m * n)
    value = value.mean(1).to(dt)
    if not grad:
        return value, None
    # Each segment's field of its estimate, its derivative in powers (t - c)^b, then at each x.
    field = (2.0 / (m * (m - 1)))[..., None, None] * B[0] - (2.0 / (m * n))[..., None, None] * B[1]
    slope = field.mean(1).flatten(0, 1)[:, 1:] * torch.arange(
        1, p, dtype=f64, device=dev
    )  # [S * boxes, p - 1]
    g = (slope[rx] * px[:, : p - 1]).sum(1)
    return value, g.to(dt)


class _GaussianMMD(torch.autograd.Function):
    """sum_s weight_s gue_mmd(segment s) with its gradient computed in the same pass as the
    kernel sums: x and y hold the S segments' subsampled values one after another.

    Autograd through exp((x - y)^2 g) would keep every n x m intermediate and walk it again
    three times backwards; here the estimate and its gradient come from one pass (the fast
    Gauss transform of all segments, or each segment's exact blocks: each visited once for all
    bandwidths, the two self-terms only on their upper triangle, the reference's self-term
    without gradient), and memory is O(m + n) (exact: O(block x n)).
    """

    @staticmethod
    def forward(ctx, x, y, x_sizes, y_sizes, weights, bandwidths, exact):
        need = ctx.needs_input_grad[0]
        w = torch.tensor(weights, dtype=x.dtype, device=x.device)
        fast = not exact and all(a * b >= _FGT_MIN_PAIRS for a, b in zip(x_sizes, y_sizes, strict=True))
        out = None
        if fast:  # float32 on the CPU: the transform, its boxes, the casts and the weights in one call
            constants = _fgt_constants(bandwidths, x.device)
            out = fused.fgt_mmd_float(
                x, y, x_sizes, y_sizes, constants, min(bandwidths), _FGT_MAX_BOXES, w, need
            )
        if out is not None:
            values, g = out  # g already weighted
        else:
            out = _fgt_mmd(x, y, x_sizes, y_sizes, bandwidths, need) if fast else None
            if out is None:
                parts = [
                    _direct_mmd(xs, ys, bandwidths, need)
                    for xs, ys in zip(x.split(x_sizes), y.split(y_sizes), strict=True)
                ]
                out = torch.stack([v for v, _ in parts]), (torch.cat([g for _, g in parts]) if need else None)
            values, g = out
            if g is not None:
                g = g * torch.repeat_interleave(w, torch.tensor(x_sizes, device=w.device))
        ctx.save_for_backward(g)
        return (w * values).sum()

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return (grad_output * grad if grad is not None else None), None, None, None, None, None, None


def rg_target(true_spacings: torch.Tensor, scales: list[int] | tuple[int, ...]) -> torch.Tensor:
    """log V_data(L) for ``rg_penalty``: computed once from the true training spacings.

    Args:
        true_spacings: 1-D true unfolded spacings (the whole training range).
        scales: block lengths L, e.g. ``trainer.rmt.default_scales(len(true_spacings))``.

    Returns:
        Detached tensor of shape (len(scales),), dtype of ``true_spacings``.
    """
    return torch.log(block_sum_variance(true_spacings.detach(), scales))


def rg_penalty(
    pred: torch.Tensor, target_log_var: torch.Tensor, scales: list[int] | tuple[int, ...]
) -> torch.Tensor:
    """mean over L of (log V_pred(L) - log V_data(L))^2, V = ``block_sum_variance`` (MATH.md §4.5).

    Args:
        pred: 1-D predicted spacings of one contiguous run, longer than max(scales).
        target_log_var: ``rg_target(true_spacings, scales)``, shape (len(scales),).
        scales: the block lengths the target was computed with.
    """
    if target_log_var.shape != (len(scales),):
        raise ValueError(
            f"rg_penalty: target has shape {tuple(target_log_var.shape)} but {len(scales)} scales were given"
        )
    log_v = torch.log(block_sum_variance(pred, scales))
    return torch.mean((log_v - target_log_var.to(device=log_v.device, dtype=log_v.dtype)).square())


@dataclass(frozen=True)
class LossWeights:
    """Weights of the four losses in the total (dimensionless; 0 switches a loss off)."""

    mse: float = 1.0
    gue_nll: float = 0.0
    gue_mmd: float = 0.0
    rg_penalty: float = 0.0

    def __post_init__(self):
        for name in LOSS_NAMES:
            w = getattr(self, name)
            if not (w >= 0.0 and w < float("inf")):
                raise ValueError(f"LossWeights.{name} must be a finite number >= 0, got {w!r}")


def _segment_average(
    pred: torch.Tensor, segments: list[tuple[int, int]], fn: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Length-weighted mean of fn(run) over the runs pred[start:stop]."""
    total_len = sum(stop - start for start, stop in segments)
    acc = pred.new_zeros(())
    for start, stop in segments:
        acc = acc + (stop - start) * fn(pred[start:stop])
    return acc / total_len


def _check_segments(segments: list[tuple[int, int]], n: int) -> None:
    if not segments:
        raise ValueError("compute_losses: segments is empty")
    for start, stop in segments:
        if not (0 <= start < stop <= n):
            raise ValueError(
                f"compute_losses: segment ({start}, {stop}) is not a non-empty range inside [0, {n}]"
            )


def compute_losses(
    pred: torch.Tensor,
    target: torch.Tensor,
    weights: LossWeights,
    *,
    segments: list[tuple[int, int]],
    mmd_reference: torch.Tensor | None,
    rg_target: torch.Tensor | None = None,
    scales: list[int] | tuple[int, ...] | None = None,
    generator: torch.Generator | None = None,
    mmd_bandwidths: tuple[float, ...] = (0.2, 0.3, 0.4),
    mmd_max_samples: int = 2048,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted total loss of one step and its parts.

    ``mse`` and ``gue_nll`` are means over all nodes and are always computed (they are O(n) and
    worth logging). ``gue_mmd`` and ``rg_penalty`` are computed on each segment and averaged
    with weights proportional to segment length, so a single segment covering ``pred`` gives
    exactly the full-batch value; with weight 0 they are not computed at all and reported as 0.
    The total sums weight * loss over the losses with weight > 0 only.

    Args:
        pred: 1-D predicted spacings (unfolded units) of the nodes in this step.
        target: 1-D true spacings, same shape.
        weights: the four loss weights.
        segments: (start, stop) index pairs into ``pred``, the maximal contiguous runs of zeros
            in the step (mini-batch: one per run of adjacent selected clusters; full-batch:
            ``[(0, len(pred))]``). Each must be longer than max(scales) when rg_penalty is on.
        mmd_reference: 1-D reference spacings for ``gue_mmd`` (required when its weight > 0).
        rg_target: ``trainer.losses.rg_target(true_train_spacings, scales)`` (required when
            the rg_penalty weight > 0, else ValueError).
        scales: block lengths of ``rg_target`` (default: [2, 4, ..., 2^len(rg_target)], the
            form ``trainer.rmt.default_scales`` returns).
        generator: torch generator for the MMD subsampling (default: the global RNG).
        mmd_bandwidths: kernel widths for ``gue_mmd`` (default 0.2, 0.3, 0.4).
        mmd_max_samples: ``gue_mmd`` subsample size per side and segment (default 2048).

    Returns:
        (total, parts) with parts keyed "mse", "gue_nll", "gue_mmd", "rg_penalty", "total".
    """
    if pred.dim() != 1:
        raise ValueError(f"compute_losses: pred must be 1-D, got shape {tuple(pred.shape)}")
    _check_segments(segments, pred.shape[0])
    zero = pred.new_zeros(())
    parts = {"mse": mse(pred, target), "gue_nll": gue_nll(pred), "gue_mmd": zero, "rg_penalty": zero}

    if weights.gue_mmd > 0:
        if mmd_reference is None:
            raise ValueError("compute_losses: gue_mmd weight > 0 needs mmd_reference")
        sizes = [stop - start for start, stop in segments]
        total_len = sum(sizes)
        starts = [0] + [stop for _, stop in segments[:-1]]  # where each segment starts if they tile pred
        tiled = segments[-1][1] == len(pred) and all(
            a == b for (a, _), b in zip(segments, starts, strict=True)
        )
        parts["gue_mmd"] = _weighted_mmd(  # the length-weighted mean over segments, in one transform
            pred if tiled else torch.cat([pred[start:stop] for start, stop in segments]),
            [size / total_len for size in sizes],
            mmd_reference,
            mmd_bandwidths,
            mmd_max_samples,
            generator,
            sizes=sizes,
        )

    if weights.rg_penalty > 0:
        if rg_target is None:
            raise ValueError(
                "compute_losses: rg_penalty weight > 0 needs rg_target (see trainer.losses.rg_target)"
            )
        if scales is None:
            scales = [2**i for i in range(1, rg_target.shape[0] + 1)]
        for start, stop in segments:
            if stop - start <= max(scales):
                raise ValueError(
                    f"compute_losses: segment ({start}, {stop}) has {stop - start} spacings, "
                    f"too short for rg_penalty scale L={max(scales)}"
                )
        parts["rg_penalty"] = _segment_average(pred, segments, lambda run: rg_penalty(run, rg_target, scales))

    total = zero
    for name in LOSS_NAMES:
        w = getattr(weights, name)
        if w > 0:
            total = total + w * parts[name]
    parts["total"] = total
    return total, parts
