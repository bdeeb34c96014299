"""Cluster-GCN partitions of a range of zeros into k clusters.

A cluster is a list of runs (start, stop) of 1-based zero indices. The prime-offset graph is a
band (every edge spans at most max(primes) zeros), so k contiguous blocks cut only about
k * sum(primes) edges: the natural partition, O(k) memory and no graph at all. METIS
(pymetis, optional) is kept for comparison: it needs the whole symmetric graph in memory and
returns clusters that are unions of many runs.
"""

from __future__ import annotations

import numpy as np

from trainer.errors import ConfigError

Cluster = list[tuple[int, int]]


def contiguous(start: int, stop: int, k: int) -> list[Cluster]:
    """k contiguous blocks of near-equal size covering [start, stop).

    Args:
        start: first zero index (1-based) of the range.
        stop: one past the last zero index.
        k: number of clusters (1 <= k <= stop - start).
    """
    if not 1 <= k <= stop - start:
        raise ValueError(f"contiguous: cannot cut {stop - start} zeros into {k} clusters")
    bounds = np.linspace(start, stop, k + 1).round().astype(np.int64)
    return [[(int(a), int(b))] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def metis(start: int, stop: int, k: int, primes: list[int], seed: int = 0) -> list[Cluster]:
    """k clusters of [start, stop) from METIS on the symmetrised prime-offset graph.

    Args:
        start: first zero index (1-based) of the range.
        stop: one past the last zero index.
        k: number of clusters.
        primes: edge offsets of the graph.
        seed: METIS random seed (default 0).

    Raises:
        ConfigError: without pymetis (an optional extra: `zeta-swarm-trainer[metis]`).
    """
    try:
        import pymetis
    except ModuleNotFoundError as e:
        raise ConfigError(
            "train.partitioner: metis needs pymetis (pip install -c constraints.txt 'zeta-swarm-trainer[metis]')"
        ) from e

    n = stop - start
    offsets = np.array(sorted(primes), dtype=np.int64)
    nodes = np.arange(n, dtype=np.int64)
    # Neighbours of node i: i - p and i + p where inside; the band makes CSR rows easy to build.
    neighbours = np.concatenate(
        [nodes[:, None] - offsets[None, ::-1], nodes[:, None] + offsets[None, :]], axis=1
    )
    valid = (neighbours >= 0) & (neighbours < n)
    xadj = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(valid.sum(axis=1), out=xadj[1:])
    adjncy = neighbours[valid]
    options = pymetis.Options(seed=seed)
    _, membership = pymetis.part_graph(k, pymetis.CSRAdjacency(xadj, adjncy), options=options)
    membership = np.asarray(membership)
    clusters = []
    for c in range(k):
        members = np.flatnonzero(membership == c)
        if members.size == 0:
            continue
        breaks = np.flatnonzero(np.diff(members) != 1) + 1
        firsts = np.concatenate([[0], breaks])
        lasts = np.concatenate([breaks, [members.size]])
        clusters.append(
            [
                (int(start + members[a]), int(start + members[b - 1] + 1))
                for a, b in zip(firsts, lasts, strict=True)
            ]
        )
    return clusters


def make_partition(
    kind: str, start: int, stop: int, k: int, primes: list[int], seed: int = 0
) -> list[Cluster]:
    """The partition named by `train.partitioner`: "contiguous" or "metis"."""
    if kind == "contiguous":
        return contiguous(start, stop, k)
    if kind == "metis":
        return metis(start, stop, k, primes, seed)
    raise ValueError(f"unknown partitioner {kind!r}")


def cut_edges(clusters: list[Cluster], primes: list[int]) -> int:
    """Number of edges n - p -> n whose ends lie in different clusters (for comparing partitions)."""
    lo = min(a for c in clusters for a, _ in c)
    hi = max(b for c in clusters for _, b in c)
    label = np.empty(hi - lo, dtype=np.int64)
    for i, c in enumerate(clusters):
        for a, b in c:
            label[a - lo : b - lo] = i
    return int(sum(np.count_nonzero(label[p:] != label[:-p]) for p in primes))
