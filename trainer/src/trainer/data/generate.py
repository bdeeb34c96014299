"""Certified zeros gamma_n for any index range, from Hardy's Z in float64 (MATH.md §2.5).

For each chunk of indices the algorithm
  1. evaluates Z at the Gram points covering the chunk, padded on both sides;
  2. partitions them into Gram blocks (good point to good point) and, where a block shows
     fewer sign changes than its length (Gram's law fails), bisects all its sub-intervals
     again and again until it does (Rosser's rule), up to a depth that resolves close pairs;
  3. certifies the count: K blocks that obey Rosser's rule on each side of a good Gram point
     g_m prove N(g_m) = m + 1 (Turing's method, Brent/Trudgian block form), so the number of
     zeros between the two anchors is known exactly and every zero gets its true index. At the
     bottom, N(g_-1) = 0 is used instead (Z < 0 on [0, gamma_1)). If the sign changes found
     do not match that number, the chunk is a DataError: no zero is ever missed or invented
     silently;
  4. polishes every sign-change bracket at once by vectorised, bracket-safeguarded inverse
     quadratic interpolation (secant first) to max(1e-10, 2 ulp(t)) in t.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from trainer.data.gram import gram_points, turing_blocks
from trainer.data.riemann_siegel import HardyZ
from trainer.errors import DataError
from trainer.unfolding import inverse_smooth_count

DEFAULT_CHUNK = 20_000  # zeros per chunk: one Z window, one progress step
DEFAULT_TOL = 1e-10  # polishing tolerance in t
_MAX_DEPTH = 14  # bisection rounds per Gram block: 0.5 / 2^14 = 3e-5 in t, below any pair in reach
_MERGE_AT = 6  # rounds after which a block still short of zeros is merged with its neighbours
_MAX_POLISH = 100
_BISECT_AFTER = 20  # interpolation steps before falling back to plain bisection


@dataclass
class GenerateStats:
    """Counters of one generate run (written into the dataset manifest's params)."""

    zeros: int = 0
    z_evals: int = 0
    gram_points: int = 0
    refined_blocks: int = 0
    max_depth: int = 0
    chunks: int = 0
    seconds: float = 0.0
    turing_k: list[int] = field(default_factory=list)
    anchors: list[tuple[int, int]] = field(
        default_factory=list
    )  # (m_a, m_b) of each chunk, N(g_m) = m + 1 proven

    def as_dict(self) -> dict:
        return {
            "zeros": self.zeros,
            "z_evals": self.z_evals,
            "z_evals_per_zero": round(self.z_evals / max(self.zeros, 1), 2),
            "gram_points": self.gram_points,
            "refined_blocks": self.refined_blocks,
            "max_refine_depth": self.max_depth,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "turing_k": sorted(set(self.turing_k)),
            "gram_anchors": [list(self.anchors[0]), list(self.anchors[-1])] if self.anchors else [],
        }


class _CountingZ:
    def __init__(self, z, stats: GenerateStats):
        self.z, self.stats = z, stats

    def __call__(self, t: np.ndarray) -> np.ndarray:
        self.stats.z_evals += int(np.size(t))
        return self.z(t)


def _sign_change_brackets(pts: np.ndarray, vals: np.ndarray, i_a: int, i_b: int):
    """Sign-change intervals among samples i_a..i_b: (lo, hi, f_lo, f_hi), in increasing order."""
    v = vals[i_a : i_b + 1]
    k = np.flatnonzero(v[:-1] * v[1:] < 0) + i_a
    return pts[k], pts[k + 1], vals[k], vals[k + 1]


def _polish(z, lo, hi, f_lo, f_hi, tol: float) -> np.ndarray:
    """Roots of z inside each bracket [lo, hi] (f_lo f_hi < 0), all brackets at once.

    Inverse quadratic interpolation on the three latest iterates (secant on the first step),
    order 1.84 for simple roots, safeguarded by the bracket, which every evaluation narrows: a
    step that leaves it falls back to secant, then regula falsi, then bisection; after
    _BISECT_AFTER steps only bisection is used. A bracket is done when the predicted step or
    the bracket falls below max(tol, 2 ulp(t)); the error is then far below the step.
    """
    lo, hi, f_lo, f_hi = lo.copy(), hi.copy(), f_lo.copy(), f_hi.copy()
    # latest iterates: x2 (oldest), x0, x1 (newest)
    x0, f0, x1, f1 = lo.copy(), f_lo.copy(), hi.copy(), f_hi.copy()
    x2, f2 = np.full_like(lo, np.nan), np.full_like(lo, np.nan)
    width_tol = np.maximum(tol, 2 * np.spacing(np.abs(hi)))
    root = np.full(lo.size, np.nan)
    active = np.arange(lo.size)
    for step in range(_MAX_POLISH):
        if active.size == 0:
            break
        L, H, FL, FH = lo[active], hi[active], f_lo[active], f_hi[active]
        X0, F0, X1, F1, X2, F2 = x0[active], f0[active], x1[active], f1[active], x2[active], f2[active]
        wt = width_tol[active]
        if step < _BISECT_AFTER:
            with np.errstate(divide="ignore", invalid="ignore"):
                secant = X1 - F1 * (X1 - X0) / (F1 - F0)
                iqi = (
                    X2 * F0 * F1 / ((F2 - F0) * (F2 - F1))
                    + X0 * F2 * F1 / ((F0 - F2) * (F0 - F1))
                    + X1 * F2 * F0 / ((F1 - F2) * (F1 - F0))
                )
                falsi = H - FH * (H - L) / (FH - FL)
            c = iqi
            for fallback in (secant, falsi, 0.5 * (L + H)):
                outside = ~((c >= L) & (c <= H))
                c[outside] = fallback[outside]
            # A predicted step below tolerance ends the bracket without another evaluation: the
            # next step would be below one ulp, where rounding, not the root, decides.
            settled = np.abs(c - X1) <= wt
            if settled.any():
                root[active[settled]] = c[settled]
                keep = ~settled
                active = active[keep]
                L, H, FL, FH, X0, F0, X1, F1, c, wt = (v[keep] for v in (L, H, FL, FH, X0, F0, X1, F1, c, wt))
                if active.size == 0:
                    break
            # Exactly on a bracket end would learn nothing; step inside instead.
            edge = (c <= L) | (c >= H)
            c[edge] = 0.5 * (L[edge] + H[edge])
        else:
            c = 0.5 * (L + H)
        fc = z(c)
        left = np.sign(fc) == np.sign(FL)
        L, FL = np.where(left, c, L), np.where(left, fc, FL)
        H, FH = np.where(left, H, c), np.where(left, FH, fc)
        done = (H - L <= wt) | (fc == 0)
        root[active[done]] = c[done]
        keep = ~done
        idx = active[keep]
        lo[idx], hi[idx], f_lo[idx], f_hi[idx] = L[keep], H[keep], FL[keep], FH[keep]
        x2[idx], f2[idx] = X0[keep], F0[keep]
        x0[idx], f0[idx], x1[idx], f1[idx] = X1[keep], F1[keep], c[keep], fc[keep]
        active = idx
    if active.size:
        raise DataError(
            f"zero polishing did not converge for {active.size} brackets near t = {lo[active[0]]:.6f}"
        )
    return root


def _isolate(z, g: np.ndarray, vals: np.ndarray, good_pos: np.ndarray, stats: GenerateStats):
    """Bisect Gram blocks with too few sign changes; returns samples and per-block status.

    A block still short of zeros after _MERGE_AT rounds is taken for a Rosser-rule exception
    (its missing pair sits in a neighbouring block, first at n = 13,999,526): it is merged with
    its neighbours and the merged group is refined until it holds as many sign changes as Gram
    intervals. Only blocks that obey Rosser's rule on their own count as ok for Turing's method.
    """
    pts = g.copy()
    lengths = np.diff(good_pos)
    g_good = g[good_pos]
    nb = lengths.size
    separate = np.ones(nb, dtype=bool)  # separate[i]: block i starts a new group
    for depth in range(_MAX_DEPTH + 1):
        bid = np.searchsorted(g_good, pts, side="right") - 1
        inside = (bid[:-1] >= 0) & (bid[:-1] < nb)
        change = vals[:-1] * vals[1:] < 0
        counts = np.bincount(bid[:-1][inside & change], minlength=nb)
        group = np.cumsum(separate) - 1
        short = np.bincount(group, weights=counts - lengths) < 0
        if not short.any() or depth == _MAX_DEPTH:
            break
        if depth == 0:
            stats.refined_blocks += int(short.sum())
        if depth >= _MERGE_AT:
            edges = np.flatnonzero(separate & short[group])  # first block of each short group
            separate[edges] = False
            ends = np.flatnonzero(short[group] & np.append(separate[1:], True)) + 1  # block after each
            separate[ends[ends < nb]] = False
            separate[0] = True
            group = np.cumsum(separate) - 1
            short = np.bincount(group, weights=counts - lengths) < 0
        stats.max_depth = max(stats.max_depth, depth + 1)
        refine = short[group]
        split = np.flatnonzero(inside & refine[np.clip(bid[:-1], 0, nb - 1)])
        mids = 0.5 * (pts[split] + pts[split + 1])
        new_vals = z(mids)
        order = np.argsort(np.concatenate((pts, mids)), kind="stable")
        pts = np.concatenate((pts, mids))[order]
        vals = np.concatenate((vals, new_vals))[order]
    return pts, vals, counts == lengths


def _anchors(m_good: np.ndarray, ok: np.ndarray, k: int, bottom: bool) -> np.ndarray:
    """Which good Gram points have N(g_m) = m + 1 proven (Turing both ways, or g_-1 at the bottom)."""
    nb = ok.size
    bad_prefix = np.concatenate(([0], np.cumsum(~ok)))  # bad blocks among the first j
    j = np.arange(nb + 1)
    below = (j >= k) & (bad_prefix[j] == bad_prefix[np.maximum(j - k, 0)])
    above = (j + k <= nb) & (bad_prefix[np.minimum(j + k, nb)] == bad_prefix[j])
    proven = below & above
    if bottom and m_good[0] == -1:
        proven[0] = True
    return proven


def _chunk(n_lo: int, n_hi: int, *, device: str, tol: float, stats: GenerateStats) -> np.ndarray:
    # Gram blocks have at most ~6 intervals in reach, so 8 per needed block is ample padding.
    pad = 8 * turing_blocks(max(float(inverse_smooth_count([n_hi + 3.0])[0]), 100.0)) + 16
    for _ in range(4):
        m_lo, m_hi = max(-1, n_lo - 2 - pad), n_hi - 1 + pad
        m = np.arange(m_lo, m_hi + 1)
        g = gram_points(m)
        # K at the top of everything used, since Brent's bound is in terms of the highest g_p.
        k = turing_blocks(max(float(g[-1]), 100.0))
        z = _CountingZ(HardyZ(float(g[0]), float(g[-1]), device), stats)
        vals = z(g)
        stats.gram_points += g.size
        good_pos = np.flatnonzero(np.where(m % 2 == 0, vals, -vals) > 0)
        if good_pos.size < 2 * k + 2:
            pad *= 2
            continue
        pts, vals_all, ok = _isolate(z, g, vals, good_pos, stats)
        m_good = m[good_pos]
        proven = _anchors(m_good, ok, k, bottom=m_lo == -1)
        lower = np.flatnonzero(proven & (m_good <= n_lo - 2))
        upper = np.flatnonzero(proven & (m_good >= n_hi - 1))
        if lower.size and upper.size:
            break
        pad *= 2
    else:
        raise DataError(
            f"zeros {n_lo}..{n_hi}: could not find Gram blocks obeying Rosser's rule around the range "
            "to certify the count (Turing's method); not supported here"
        )
    stats.turing_k.append(k)
    ja, jb = lower[-1], upper[0]
    m_a, m_b = int(m_good[ja]), int(m_good[jb])
    stats.anchors.append((m_a, m_b))
    i_a = int(np.searchsorted(pts, g[good_pos[ja]]))
    i_b = int(np.searchsorted(pts, g[good_pos[jb]]))
    lo, hi, f_lo, f_hi = _sign_change_brackets(pts, vals_all, i_a, i_b)
    expected = m_b - m_a  # N(g_b) - N(g_a), proven by Turing's method at both anchors
    if lo.size != expected:
        bad = np.flatnonzero(~ok[ja:jb])
        where = f" (unresolved Gram blocks near g_{int(m_good[ja + bad[0]])})" if bad.size else ""
        raise DataError(
            f"zeros {n_lo}..{n_hi}: found {lo.size} sign changes of Z between Gram points g_{m_a} and g_{m_b}, "
            f"but Turing's method proves exactly {expected} zeros there{where}; refusing to guess"
        )
    index = m_a + 2 + np.arange(expected)
    keep = (index >= n_lo) & (index <= n_hi)
    roots = _polish(z, lo[keep], hi[keep], f_lo[keep], f_hi[keep], tol)
    if roots.size != n_hi - n_lo + 1 or not np.all(np.diff(roots) > 0):
        raise DataError(
            f"zeros {n_lo}..{n_hi}: polishing produced {roots.size} increasing roots, expected {n_hi - n_lo + 1}"
        )
    return roots


def generate_zeros(
    start: int,
    count: int,
    *,
    device: str = "cpu",
    chunk: int = DEFAULT_CHUNK,
    tol: float = DEFAULT_TOL,
    threads: int | None = 1,
    progress: Callable[[int, int, GenerateStats], None] | None = None,
) -> tuple[np.ndarray, GenerateStats]:
    """Zeros gamma_start .. gamma_{start+count-1}, count-certified.

    Args:
        start: 1-based index of the first zero (>= 1).
        count: number of zeros (>= 1).
        device: "cpu" or "cuda": where the Riemann–Siegel sums run (torch).
        chunk: zeros per chunk (default 20,000); memory grows with it, speed barely.
        tol: polishing tolerance in t (default 1e-10; float64 spacing wins above t ~ 5e5).
        threads: torch CPU threads for the run (default 1; None keeps torch's setting). On a
            shared 2-core machine one thread ran 8x faster than two (213 vs 25 M element-ops/s
            at load 8), because torch's intra-op threads spin against the other processes.
        progress: called after each chunk with (zeros done, count, stats).

    Returns:
        (float64 array of the zeros, GenerateStats).

    Raises:
        DataError: if the count of zeros cannot be certified in some chunk.
    """
    if start < 1 or count < 1:
        raise DataError(f"generate needs --start >= 1 and --count >= 1, got start={start}, count={count}")
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise DataError("--device cuda: torch sees no CUDA device here; use --device cpu")
    stats = GenerateStats()
    began = time.perf_counter()
    out = np.empty(count, dtype=np.float64)
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        for lo in range(start, start + count, chunk):
            hi = min(lo + chunk, start + count) - 1
            out[lo - start : hi - start + 1] = _chunk(lo, hi, device=device, tol=tol, stats=stats)
            stats.chunks += 1
            stats.zeros = hi - start + 1
            stats.seconds = time.perf_counter() - began
            if progress is not None:
                progress(stats.zeros, count, stats)
    finally:
        torch.set_num_threads(saved_threads)
    return out, stats


def accuracy_bound(zeros: np.ndarray, tol: float = DEFAULT_TOL) -> float:
    """Absolute accuracy recorded for generated zeros, in t units.

    Z is evaluated to ~1e-12 (window phases; Euler–Maclaurin below t = 2000), so a root is as
    good as its final bracket, max(tol, 2 ulp(t)); 1e-9 is recorded as a margin over that.
    """
    return max(1e-9, 10 * tol, 2 * math.ulp(float(np.max(zeros))))


def generate_zeros_parallel(
    start: int,
    count: int,
    *,
    workers: int,
    chunk: int = DEFAULT_CHUNK,
    tol: float = DEFAULT_TOL,
    progress: Callable[[int, int, GenerateStats], None] | None = None,
) -> tuple[np.ndarray, GenerateStats]:
    """generate_zeros on `workers` processes (one CPU thread each), for a machine of its own.

    The range is split into `workers` contiguous pieces; each piece certifies its own count
    (Turing's method on both sides), so the concatenation holds exactly gamma_start ..
    gamma_{start+count-1}. Pieces are joined in order; `progress` is called as each is joined.
    """
    import concurrent.futures
    import multiprocessing

    bounds = np.unique(np.linspace(start, start + count, workers + 1).round().astype(np.int64))
    began = time.perf_counter()
    total = GenerateStats()
    out = np.empty(count, dtype=np.float64)
    context = multiprocessing.get_context("spawn")  # torch and fork do not mix
    with concurrent.futures.ProcessPoolExecutor(bounds.size - 1, mp_context=context) as pool:
        futures = [
            pool.submit(generate_zeros, int(a), int(b - a), chunk=chunk, tol=tol, threads=1)
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        for a, future in zip(bounds[:-1], futures, strict=True):
            zeros, stats = future.result()
            out[a - start : a - start + zeros.size] = zeros
            for name in ("z_evals", "gram_points", "refined_blocks", "chunks"):
                setattr(total, name, getattr(total, name) + getattr(stats, name))
            total.max_depth = max(total.max_depth, stats.max_depth)
            total.turing_k += stats.turing_k
            total.anchors += stats.anchors
            total.zeros += zeros.size
            total.seconds = time.perf_counter() - began
            if progress is not None:
                progress(total.zeros, count, total)
    return out, total
