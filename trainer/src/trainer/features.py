"""Node features, targets and the classical estimate for any set of zeros, read from the dataset.

Node n (zero n) sees only zeros up to n (MATH.md §3 for x, s, delta):

    [s_{n-window} - 1, ..., s_{n-1} - 1,   delta_n,   height_n,   (smoothed_n)]

* s_k = x_{k+1} - x_k are unfolded spacings (centred on their mean 1);
* delta_n = x_n - (n - 1/2), the fluctuation of zero n;
* height_n = (log(t_hat_n / 2 pi) - 10) / 2 with t_hat_n = N̄^{-1}(n - 1/2): the local
  log-density of zeros, a function of the index alone;
* smoothed_n (optional) = f_{n+1}, the strongest classical estimate of delta_{n+1} (MATH.md §5.1
  (f), trainer.baselines.SmoothedPredictor), which uses no zeros at all.

The target is the next spacing s_n = x_{n+1} - x_n = 1 + delta_{n+1} - delta_n. Every node also
carries `base`, what the model adds its output to: 1 + f_{n+1} - delta_n for the residual head
(so an output of 0 predicts delta_{n+1} = f_{n+1}, baseline (f) exactly), 0 for the spacing head.

Everything positional is computed from fluctuations delta (O(1) numbers), never from x ~ n, so
float64 keeps ~1e-16 of them. Index features depend only on n, so the autoregressive rollout
rebuilds just the position part from predicted deltas.

A batch is a set of runs of consecutive zeros: each run reads its history (`window` zeros
before it) from the dataset, so any cluster is built without a global graph or feature table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trainer import graph
from trainer.baselines import SmoothedPredictor, fit_explicit_scale
from trainer.errors import DataError
from trainer.unfolding import inverse_smooth_count, unfold

HEIGHT_CENTER = 10.0  # log(t/2pi) is 5.4 at n ~ 1e3 and 12.1 at n ~ 2e6 (MATH.md §3)
HEIGHT_SCALE = 2.0


def feature_names(window: int, smoothed: bool) -> list[str]:
    """Column names of the node feature matrix, in order."""
    names = [f"s[n-{k}]" for k in range(window, 0, -1)] + ["delta", "height"]
    return names + ["smoothed"] if smoothed else names


def index_features(n: np.ndarray, smoothed_next: np.ndarray | None) -> np.ndarray:
    """The columns that depend on the zero index alone: height and (optionally) smoothed.

    Args:
        n: 1-based zero indices (int array, shape [m]).
        smoothed_next: f_{n+1} for those nodes (float64 [m]), or None to leave that column out.

    Returns:
        float64 array [m, 1] or [m, 2].
    """
    n = np.asarray(n, dtype=np.float64)
    t_hat = inverse_smooth_count(n - 0.5)
    cols = [(np.log(t_hat / (2 * math.pi)) - HEIGHT_CENTER) / HEIGHT_SCALE]
    if smoothed_next is not None:
        cols.append(np.asarray(smoothed_next, dtype=np.float64).reshape(n.shape))
    return np.stack(cols, axis=-1)


def position_features(delta: np.ndarray, window: int) -> np.ndarray:
    """The columns built from positions: the last `window` spacings (minus 1) and delta_n.

    Args:
        delta: fluctuations delta_{first-window} .. delta_{first+m-1} along the last axis
            (float64, shape [..., m + window]); leading axes are independent batches.
        window: number of past spacings per node.

    Returns:
        float64 array [..., m, window + 1] for nodes first .. first + m - 1.
    """
    m = delta.shape[-1] - window
    s = np.diff(delta, axis=-1)  # s_k - 1 = delta_{k+1} - delta_k
    past = np.lib.stride_tricks.sliding_window_view(s, window, axis=-1)[..., :m, :]
    return np.concatenate([past, delta[..., window:, None]], axis=-1)


def read_fluctuations(dataset, start: int, stop: int) -> np.ndarray:
    """delta_n = x_n - (n - 1/2) for start <= n < stop (1-based), float64."""
    n = np.arange(start, stop, dtype=np.float64)
    return read_unfolded(dataset, start, stop) - (n - 0.5)


def read_unfolded(dataset, start: int, stop: int) -> np.ndarray:
    """x_n for start <= n < stop (1-based), unfolded from the dataset's ordinates (a copy)."""
    return unfold(np.array(dataset.ordinates(start, stop), dtype=np.float64))


@dataclass(frozen=True)
class Classical:
    """The two formula predictors fitted on one training range; they use no zeros to predict.

    Attributes:
        explicit_a: scale of the sharp sum (d) (baseline_explicit).
        smoothed: (f) (baseline_smoothed, the model's feature and starting point).
    """

    explicit_a: float
    smoothed: SmoothedPredictor


def fit_classical(dataset, start: int, stop: int, *, X: int, beta: float, max_samples: int) -> Classical:
    """Fit the scales of (d) and (f) on the zeros in [start, stop), the training range only.

    At most `max_samples` zeros spread evenly over the range are used: the scales are three
    numbers, and a bounded sample keeps a 1e7-zero range from costing memory or minutes.
    """
    n = np.unique(np.linspace(start, stop - 1, min(stop - start, max_samples)).round().astype(np.int64))
    delta = unfold(np.asarray(dataset.take(n), dtype=np.float64)) - (n - 0.5)
    smoothed, _ = SmoothedPredictor.fit(n, delta, X=X, beta=beta)
    return Classical(fit_explicit_scale(n, delta), smoothed)


@dataclass
class NodeSet:
    """Features, targets and graph of one step's nodes (one or more runs of consecutive zeros).

    Attributes:
        index: global zero indices of the nodes, increasing (int64 [m]).
        features: float32 [m, F] node features (see the module docstring).
        target: float64 [m] true next spacings s_n.
        base: float64 [m] what the model's output is added to (module docstring).
        table: causal neighbour table [m, len(primes)] (trainer.graph.neighbour_table).
        segments: maximal runs of consecutive zeros as (local start, local stop).
    """

    index: np.ndarray
    features: np.ndarray
    target: np.ndarray
    base: np.ndarray
    table: np.ndarray
    segments: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.index)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.index, self.features, self.target, self.base, self.table))


def join_nodes(parts: list[NodeSet], primes: list[int]) -> NodeSet:
    """The union of node sets of disjoint zeros, with the causal edges of the union.

    A node's features depend only on its own zero and the zeros before it in the dataset, never
    on which other nodes share its batch, so clusters built once can be joined in any step.
    """
    parts = sorted(parts, key=lambda p: int(p.index[0]))
    index = np.concatenate([p.index for p in parts])
    if np.any(np.diff(index) <= 0):
        raise ValueError("join_nodes: the node sets overlap")
    return NodeSet(
        index=index,
        features=np.concatenate([p.features for p in parts]),
        target=np.concatenate([p.target for p in parts]),
        base=np.concatenate([p.base for p in parts]),
        table=graph.neighbour_table(index, primes),
        segments=graph.segments(index),
    )


def build_nodes(
    dataset,
    runs: list[tuple[int, int]],
    *,
    primes: list[int],
    window: int,
    smoothed: SmoothedPredictor | None,
    residual: bool,
) -> NodeSet:
    """Nodes for the given runs of zeros, with their induced causal edges.

    Args:
        dataset: an opened ZerosDataset (trainer.data.dataset.open_dataset).
        runs: disjoint (start, stop) ranges of 1-based zero indices, increasing; adjacent runs
            are joined, so edges between them count as internal.
        primes: edge offsets p (edge n - p -> n).
        window: past spacings per node.
        smoothed: (f), whose estimate of delta_{n+1} becomes the last feature column, or None
            without it.
        residual: base = 1 + f_{n+1} - delta_n (the residual head; needs `smoothed`), else 0.

    Raises:
        DataError: if a run, its history or its target zero lies outside the dataset.
    """
    if residual and smoothed is None:
        raise ValueError("build_nodes: the residual head needs the smoothed estimate")
    index_parts, feature_parts, target_parts, base_parts = [], [], [], []
    for start, stop in _joined(runs):
        lo, hi = start - window, stop + 1  # history before the run; delta_{stop} for the last target
        if lo < dataset.first_index or hi > dataset.last_index + 1:
            raise DataError(
                f"{dataset.path}: nodes {start}..{stop - 1} need zeros {lo}..{hi - 1} "
                f"(history of {window} and one target), outside the dataset's {dataset.first_index}..{dataset.last_index}"
            )
        delta = read_fluctuations(dataset, lo, hi)
        n = np.arange(start, stop, dtype=np.int64)
        f_next = smoothed.predict(n + 1) if smoothed is not None else None
        pos = position_features(delta[:-1], window)
        feature_parts.append(np.concatenate([pos, index_features(n, f_next)], axis=1).astype(np.float32))
        target_parts.append(1.0 + np.diff(delta[window:]))
        base_parts.append(1.0 + f_next - delta[window:-1] if residual else np.zeros(len(n)))
        index_parts.append(n)
    index = np.concatenate(index_parts)
    return NodeSet(
        index=index,
        features=np.concatenate(feature_parts),
        target=np.concatenate(target_parts),
        base=np.concatenate(base_parts),
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
