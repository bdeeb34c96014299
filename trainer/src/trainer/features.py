"""Node features and targets for any set of zeros, read straight from the memory-mapped dataset.

Node n (zero n) sees only zeros up to n (MATH.md §3 for x, s, delta):

    [s_{n-window} - 1, ..., s_{n-1} - 1,   delta_n,   height_n,   (explicit_n)]

* s_k = x_{k+1} - x_k are unfolded spacings (centred on their mean 1);
* delta_n = x_n - (n - 1/2), the fluctuation of zero n;
* height_n = (log(t_hat_n / 2 pi) - 10) / 2 with t_hat_n = N̄^{-1}(n - 1/2): the local
  log-density of zeros, a function of the index alone;
* explicit_n (optional) = a * P_X(t_hat_{n+1}), the explicit-formula estimate of delta_{n+1}
  (trainer.baselines.explicit_delta), which uses no zeros at all: with it the model may learn the
  residual of classical number theory rather than compete with it.

The target is the next spacing s_n = x_{n+1} - x_n. Index features depend only on n, so the
autoregressive rollout rebuilds just the position part from predicted x.

A batch is a set of runs of consecutive zeros: each run reads its history (`window` zeros
before it) from the memmap, so any cluster is built without a global graph or feature table.
"""

from __future__ import annotations

import math
import mmap
from dataclasses import dataclass

import numpy as np

from trainer import graph
from trainer.baselines import explicit_delta, fit_explicit_scale
from trainer.errors import DataError
from trainer.unfolding import inverse_smooth_count, unfold

HEIGHT_CENTER = 10.0  # log(t/2pi) is 5.4 at n ~ 1e3 and 12.1 at n ~ 2e6 (MATH.md §3)
HEIGHT_SCALE = 2.0


def feature_names(window: int, explicit: bool) -> list[str]:
    """Column names of the node feature matrix, in order."""
    names = [f"s[n-{k}]" for k in range(window, 0, -1)] + ["delta", "height"]
    return names + ["explicit"] if explicit else names


def index_features(n: np.ndarray, explicit_a: float | None) -> np.ndarray:
    """The columns that depend on the zero index alone: height and (optionally) explicit.

    Args:
        n: 1-based zero indices (int array, shape [m]).
        explicit_a: scale a of the explicit-formula estimate (trainer.baselines.fit_explicit_scale),
            or None to leave that column out.

    Returns:
        float64 array [m, 1] or [m, 2].
    """
    n = np.asarray(n, dtype=np.float64)
    t_hat = inverse_smooth_count(n - 0.5)
    cols = [(np.log(t_hat / (2 * math.pi)) - HEIGHT_CENTER) / HEIGHT_SCALE]
    if explicit_a is not None:
        cols.append(explicit_delta(n + 1, explicit_a))
    return np.stack(cols, axis=1)


def position_features(x: np.ndarray, first, window: int) -> np.ndarray:
    """The columns built from unfolded positions: the last `window` spacings and delta_n.

    Args:
        x: unfolded positions x_{first-window} .. x_{first+m-1} along the last axis (float64,
            shape [..., m + window]); leading axes are independent batches (rollout windows).
        first: 1-based index of the first node (int, or an int array of the leading shape).
        window: number of past spacings per node.

    Returns:
        float64 array [..., m, window + 1] for nodes first .. first + m - 1.
    """
    m = x.shape[-1] - window
    s = np.diff(x, axis=-1) - 1.0  # s[..., j] = s_{first - window + j} - 1
    past = np.lib.stride_tricks.sliding_window_view(s, window, axis=-1)[..., :m, :]
    n = np.asarray(first, dtype=np.float64)[..., None] + np.arange(m, dtype=np.float64)
    delta = x[..., window:] - (n - 0.5)
    return np.concatenate([past, delta[..., None]], axis=-1)


def read_unfolded(dataset, start: int, stop: int) -> np.ndarray:
    """x_n for start <= n < stop (1-based), unfolded from the dataset's memory-mapped ordinates."""
    x = unfold(np.asarray(dataset.ordinates(start, stop)))
    _release_pages(dataset)
    return x


def _release_pages(dataset) -> None:
    # Unmap the pages just read: the copy is all that is kept, and without this an epoch over
    # 1e7 zeros would count the whole 80 MB file in this process's resident set.
    mapping = getattr(dataset.zeros, "_mmap", None)  # numpy.memmap's mmap object
    if mapping is not None:
        mapping.madvise(mmap.MADV_DONTNEED)


def explicit_scale(dataset, start: int, stop: int, max_samples: int = 100_000) -> float:
    """The scale a of the explicit-formula estimate delta_n ~ a * P_X(t_hat_n), fitted on zeros in [start, stop).

    At most `max_samples` zeros spread evenly over the range are used: a is one number, and
    a bounded sample keeps a 1e7-zero training range from costing memory or minutes.

    Args:
        dataset: an opened ZerosDataset.
        start: first zero index (1-based) of the training range.
        stop: one past its last zero.
        max_samples: zeros used at most (default 100,000).
    """
    n = np.unique(np.linspace(start, stop - 1, min(stop - start, max_samples)).round().astype(np.int64))
    gamma = np.asarray(dataset.zeros[n - dataset.first_index])
    _release_pages(dataset)
    return fit_explicit_scale(n, unfold(gamma) - (n - 0.5))


@dataclass
class NodeSet:
    """Features, targets and graph of one step's nodes (one or more runs of consecutive zeros).

    Attributes:
        index: global zero indices of the nodes, increasing (int64 [m]).
        features: float32 [m, F] node features (see the module docstring).
        target: float64 [m] true next spacings s_n.
        table: causal neighbour table [m, len(primes)] (trainer.graph.neighbour_table).
        segments: maximal runs of consecutive zeros as (local start, local stop).
    """

    index: np.ndarray
    features: np.ndarray
    target: np.ndarray
    table: np.ndarray
    segments: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.index)


def build_nodes(
    dataset, runs: list[tuple[int, int]], *, primes: list[int], window: int, explicit_a: float | None
) -> NodeSet:
    """Nodes for the given runs of zeros, with their induced causal edges.

    Args:
        dataset: an opened ZerosDataset (trainer.data.dataset.open_dataset).
        runs: disjoint (start, stop) ranges of 1-based zero indices, increasing; adjacent runs
            are joined, so edges between them count as internal.
        primes: edge offsets p (edge n - p -> n).
        window: past spacings per node.
        explicit_a: scale of the explicit-formula feature, or None without it.

    Raises:
        DataError: if a run, its history or its target zero lies outside the dataset.
    """
    index_parts, feature_parts, target_parts = [], [], []
    for start, stop in _joined(runs):
        lo, hi = start - window, stop + 1  # history before the run; x_{stop} for the last target
        if lo < dataset.first_index or hi > dataset.last_index + 1:
            raise DataError(
                f"{dataset.path}: nodes {start}..{stop - 1} need zeros {lo}..{hi - 1} "
                f"(history of {window} and one target), outside the dataset's {dataset.first_index}..{dataset.last_index}"
            )
        x = read_unfolded(dataset, lo, hi)
        n = np.arange(start, stop, dtype=np.int64)
        pos = position_features(x[:-1], start, window)
        feature_parts.append(np.concatenate([pos, index_features(n, explicit_a)], axis=1).astype(np.float32))
        target_parts.append(np.diff(x[window:]))
        index_parts.append(n)
    index = np.concatenate(index_parts)
    return NodeSet(
        index=index,
        features=np.concatenate(feature_parts),
        target=np.concatenate(target_parts),
        table=graph.neighbour_table(index, primes),
        segments=graph.segments(index),
    )


def _joined(runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for start, stop in sorted(runs):
        if start >= stop:
            raise ValueError(f"empty run ({start}, {stop})")
        if out and start < out[-1][1]:
            raise ValueError(f"overlapping runs at zero {start}")
        if out and start == out[-1][1]:
            out[-1][1] = stop
        else:
            out.append([start, stop])
    return [(a, b) for a, b in out]
