"""Cluster-GCN partitions: contiguous blocks of the band graph, METIS for comparison."""

from __future__ import annotations

import numpy as np

from trainer import partition


def test_contiguous_blocks_cover_the_range_in_order():
    clusters = partition.contiguous(101, 111, 3)
    assert clusters == [[(101, 104)], [(104, 108)], [(108, 111)]]
    # a band graph cut into k blocks loses at most (k - 1) * sum(primes) edges
    assert partition.cut_edges(clusters, [2, 3]) == 2 * (2 + 3)


def test_metis_partitions_every_node_once_and_cuts_no_fewer_edges_than_needed():
    clusters = partition.metis(1, 2001, 4, [2, 3, 5, 7])
    covered = np.concatenate([np.arange(a, b) for c in clusters for a, b in c])
    assert np.array_equal(np.sort(covered), np.arange(1, 2001))
    assert len(clusters) == 4
    cut_metis = partition.cut_edges(clusters, [2, 3, 5, 7])
    cut_blocks = partition.cut_edges(partition.contiguous(1, 2001, 4), [2, 3, 5, 7])
    assert cut_blocks == 3 * (2 + 3 + 5 + 7)
    assert cut_metis >= cut_blocks * 0.5  # METIS has no better cut to find on a band
