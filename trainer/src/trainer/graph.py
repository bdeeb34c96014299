"""The prime-offset graph: node n = zero n, causal edges n - p -> n for every p in `primes`.

The graph is a band, so it is never stored globally: any node set (one cluster, several,
the whole training range) gets its induced edges from a neighbour table of shape
[nodes, primes], computed from the sorted global indices alone. Message passing gathers
through the table (trainer.model.Neighbours), so no per-edge feature tensor exists; the CSR
adjacency and edge_index below serve PyG's own layers.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from trainer import fused

#: neighbour_table looks zeros up in a dense position map when the nodes' index span is at most
#: this many times their number (every training batch: clusters of a bounded range), else by
#: binary search (e.g. a few windows far apart).
DENSE_SPAN_PER_NODE = 64


def neighbour_table(index: np.ndarray, primes: list[int]) -> np.ndarray:
    """Local source of each causal edge into each node, inside the node set.

    Args:
        index: strictly increasing global zero indices n of the nodes (int64, shape [m]).
        primes: the offsets p; node n receives an edge from n - p when n - p is in `index`.

    Returns:
        int64 array [m, len(primes)]: entry [i, j] is the local position of index[i] - primes[j],
        or -1 where that zero is not a node (the edge is left out).
    """
    index = np.asarray(index, dtype=np.int64)
    m = len(index)
    if m and (native := fused.neighbour_table(index, primes)) is not None:
        return native  # the same table by one loop in C++ (csrc/neighbours.cpp)
    table = np.full((m, len(primes)), -1, dtype=np.int64)
    if m == 0:
        return table
    span = int(index[-1] - index[0]) + 1
    if span <= DENSE_SPAN_PER_NODE * m:  # a gather per offset instead of a search: ~3x faster
        local = index - index[0]
        position = np.full(span, -1, dtype=np.int64)
        position[local] = np.arange(m)
        for j, p in enumerate(primes):
            wanted = local - p
            inside = (wanted >= 0) & (wanted < span)
            table[inside, j] = position[wanted[inside]]
        return table
    for j, p in enumerate(primes):
        wanted = index - p
        pos = np.searchsorted(index, wanted)
        found = pos < m
        found[found] = index[pos[found]] == wanted[found]
        table[found, j] = pos[found]
    return table


def edge_index(table: np.ndarray) -> torch.Tensor:
    """PyG edge_index [2, E] (row 0 = source, row 1 = target) from a neighbour table, target-major."""
    targets, cols = np.nonzero(table >= 0)
    return torch.from_numpy(np.stack([table[targets, cols], targets]))


def adjacency(table: np.ndarray) -> torch.Tensor:
    """Sparse CSR adjacency adj_t [m, m] with adj_t[target, source] = 1, the form PyG convs aggregate with spmm."""
    valid = table >= 0
    crow = np.zeros(len(table) + 1, dtype=np.int64)
    np.cumsum(valid.sum(axis=1), out=crow[1:])
    col = table[valid]  # row-major order, so already grouped by target row
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(crow),
            torch.from_numpy(np.ascontiguousarray(col)),
            torch.ones(len(col)),
            size=(len(table), len(table)),
            check_invariants=False,
        )


def segments(index: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of consecutive zero indices, as (local start, local stop) pairs in node order."""
    index = np.asarray(index, dtype=np.int64)
    if len(index) == 0:
        return []
    breaks = np.nonzero(np.diff(index) != 1)[0] + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(index)]])
    return [(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]
