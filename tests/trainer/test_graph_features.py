"""The prime-offset graph and node features on tiny hand-built cases with exact expected values."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch

from trainer import features, fused, graph, model


def test_neighbour_table_ten_zeros_primes_2_3():
    table = graph.neighbour_table(np.arange(1, 11), [2, 3])
    # node n (row n-1) receives n-2 and n-3 where those are nodes (local position = index - 1)
    expected = np.array([[-1, -1], [-1, -1], [0, -1], [1, 0], [2, 1], [3, 2], [4, 3], [5, 4], [6, 5], [7, 6]])
    np.testing.assert_array_equal(table, expected)
    ei = graph.edge_index(table)
    edges = sorted(zip(ei[0].tolist(), ei[1].tolist(), strict=True))
    assert edges == sorted((t - p, t) for t in range(10) for p in (2, 3) if t - p >= 0)
    assert ei.shape == (2, 15)


def test_induced_edges_of_two_runs_cross_the_gap_only_where_both_ends_are_nodes():
    index = np.array([1, 2, 3, 6, 7, 8])
    table = graph.neighbour_table(index, [2, 3])
    # 3<-1 (p=2); 6<-3 (p=3); 8<-6 (p=2); nothing else has both ends in the set
    expected = np.array([[-1, -1], [-1, -1], [0, -1], [-1, 2], [-1, -1], [3, -1]])
    np.testing.assert_array_equal(table, expected)
    assert graph.segments(index) == [(0, 3), (3, 6)]
    assert graph.segments(np.arange(5, 9)) == [(0, 4)]


@pytest.mark.parametrize("dense_span_per_node", [0, 10**9])  # the binary search, the position map
def test_neighbour_table_matches_a_dictionary_lookup_on_both_paths(monkeypatch, dense_span_per_node):
    monkeypatch.setattr(graph, "DENSE_SPAN_PER_NODE", dense_span_per_node)
    rng = np.random.default_rng(7)
    primes = [2, 3, 5, 7, 11, 13]
    for case in range(20):
        runs = [(int(a), int(a) + int(rng.integers(1, 40))) for a in rng.choice(10**5, 6, replace=False)]
        index = np.unique(np.concatenate([np.arange(a, b) for a, b in runs]))
        if case == 0:
            index = index[:1]  # one node: no edge
        where = {int(n): i for i, n in enumerate(index)}
        expected = np.array([[where.get(int(n) - p, -1) for p in primes] for n in index])
        np.testing.assert_array_equal(graph.neighbour_table(index, primes), expected)
    assert graph.neighbour_table(np.array([], dtype=np.int64), primes).shape == (0, 6)


def test_csr_adjacency_matches_the_table():
    table = graph.neighbour_table(np.arange(1, 11), [2, 3])
    dense = graph.adjacency(table).to_dense()
    expected = torch.zeros(10, 10)
    for target, row in enumerate(table):
        for source in row[row >= 0]:
            expected[target, source] = 1.0
    torch.testing.assert_close(dense, expected)


def test_position_features_by_hand():
    # fluctuations d_n for n = 1..10, so x_n = n - 1/2 + d_n and s_n - 1 = d_{n+1} - d_n
    d = np.array([0.1, -0.2, 0.05, 0.3, -0.1, 0.0, 0.25, -0.15, 0.2, -0.05])
    x = np.arange(1, 11) - 0.5 + d
    window = 3
    got = features.position_features(d, window=window)  # nodes 4..10
    assert got.shape == (7, window + 1)
    for row, node in zip(got, range(4, 11), strict=True):
        spacings = [x[k] - x[k - 1] for k in range(node - window, node)]  # s_{node-3}, .., s_{node-1}
        np.testing.assert_allclose(row[:window], np.array(spacings) - 1.0, atol=1e-14)
        assert row[window] == d[node - 1]


def test_position_features_batch_over_windows_equals_one_by_one():
    rng = np.random.default_rng(0)
    d = rng.normal(scale=0.3, size=(3, 20))
    batched = features.position_features(d, 4)
    for i in range(3):
        np.testing.assert_array_equal(batched[i], features.position_features(d[i], 4))


def _mp_unfold(gamma: float) -> float:
    return float(mpmath.siegeltheta(mpmath.mpf(gamma)) / mpmath.pi + 1)


def test_build_nodes_on_real_zeros_against_mpmath(odlyzko_small):
    from trainer.baselines import SmoothedPredictor
    from trainer.data.dataset import open_dataset

    ds = open_dataset(odlyzko_small)
    window = 4
    smoothed = SmoothedPredictor(X=1000, beta=0.5, a0=0.8, a1=0.9)
    nodes = features.build_nodes(
        ds, [(1001, 1011), (1020, 1030)], primes=[2, 3], window=window, smoothed=smoothed, residual=True
    )
    assert nodes.features.dtype == np.float32 and nodes.features.shape == (20, window + 3)
    assert nodes.segments == [(0, 10), (10, 20)]
    gamma = {n: float(g) for n, g in zip(range(990, 1031), ds.ordinates(990, 1031), strict=True)}
    for row, target, n in zip(nodes.features, nodes.target, nodes.index, strict=True):
        x = {k: _mp_unfold(gamma[k]) for k in range(n - window, n + 2)}
        expected_s = [x[k + 1] - x[k] - 1.0 for k in range(n - window, n)]
        np.testing.assert_allclose(row[:window], expected_s, atol=1e-6)
        assert row[window] == pytest.approx(x[n] - (n - 0.5), abs=1e-6)
        t_hat = float(
            mpmath.findroot(lambda t, n=n: mpmath.siegeltheta(t) / mpmath.pi + 1 - (n - 0.5), gamma[n])
        )
        height = (math.log(t_hat / (2 * math.pi)) - features.HEIGHT_CENTER) / features.HEIGHT_SCALE
        assert row[window + 1] == pytest.approx(height, abs=1e-6)
        f_next = float(smoothed.predict(np.array([n + 1]))[0])
        assert row[window + 2] == pytest.approx(f_next, abs=1e-6)
        assert target == pytest.approx(x[n + 1] - x[n], abs=1e-9)
    # The residual head's base puts zero n+1 where (f) puts it: x_n + base = n + 1/2 + f_{n+1}.
    for base, n in zip(nodes.base, nodes.index, strict=True):
        delta_n = _mp_unfold(gamma[n]) - (n - 0.5)
        assert base == pytest.approx(1 + float(smoothed.predict(np.array([n + 1]))[0]) - delta_n, abs=1e-9)


def test_features_never_see_later_zeros(odlyzko_small):
    from trainer.data.dataset import open_dataset

    ds = open_dataset(odlyzko_small)
    long = features.build_nodes(ds, [(5000, 5100)], primes=[2, 3, 5], window=8, smoothed=None, residual=False)
    short = features.build_nodes(
        ds, [(5000, 5050)], primes=[2, 3, 5], window=8, smoothed=None, residual=False
    )
    np.testing.assert_array_equal(long.features[:50], short.features)
    np.testing.assert_array_equal(long.table[:50], short.table)


def test_build_nodes_outside_the_dataset_is_a_data_error(odlyzko_small):
    from trainer.data.dataset import open_dataset
    from trainer.errors import DataError

    ds = open_dataset(odlyzko_small)
    with pytest.raises(DataError, match="history"):
        features.build_nodes(ds, [(3, 10)], primes=[2], window=8, smoothed=None, residual=False)
    with pytest.raises(DataError, match="outside"):
        features.build_nodes(ds, [(29_990, 30_001)], primes=[2], window=8, smoothed=None, residual=False)


def test_classical_scales_from_a_spread_sample_match_the_full_fit(odlyzko_small):
    from trainer.baselines import SmoothedPredictor, fit_explicit_scale
    from trainer.data.dataset import open_dataset

    ds = open_dataset(odlyzko_small)
    n = np.arange(10_000, 20_000)
    delta = features.read_fluctuations(ds, 10_000, 20_000)
    full = features.fit_classical(ds, 10_000, 20_000, X=30_000, beta=0.5, max_samples=10_000)
    assert full.explicit_a == pytest.approx(fit_explicit_scale(n, delta), abs=1e-12)  # sample = range
    assert full.smoothed == SmoothedPredictor.fit(n, delta, X=30_000)[0]
    sample = features.fit_classical(ds, 10_000, 20_000, X=30_000, beta=0.5, max_samples=2_000)
    assert sample.explicit_a == pytest.approx(full.explicit_a, rel=0.1)
    assert sample.smoothed.a1 == pytest.approx(full.smoothed.a1, rel=0.1)
    assert 0.5 < full.explicit_a < 1.0  # MATH.md §5: a ~ 0.8 at these heights


def test_residual_needs_the_smoothed_estimate(odlyzko_small):
    from trainer.data.dataset import open_dataset

    with pytest.raises(ValueError, match="residual head needs"):
        features.build_nodes(
            open_dataset(odlyzko_small), [(5000, 5010)], primes=[2], window=8, smoothed=None, residual=True
        )


@pytest.mark.skipif(fused.library() is None, reason="needs g++ to build trainer/csrc/neighbours.cpp")
def test_the_compiled_graph_pieces_equal_numpys():
    # csrc/neighbours.cpp against the numpy versions (fused.eager() turns it off): the neighbour
    # table on dense runs and on runs far apart, offsets down to 1; the gather tables, sum and
    # mean, with their transpose and reach, exactly.
    rng = np.random.default_rng(11)
    for case in range(12):
        starts = rng.choice(10**6 if case % 2 else 400, 5, replace=False)
        index = np.unique(np.concatenate([np.arange(a, a + int(rng.integers(1, 60))) for a in starts]))
        primes = [1, 3, 5, 7] if case % 3 == 0 else [2, 3, 5, 7, 11, 13]
        table = graph.neighbour_table(index, primes)
        with fused.eager():
            want = graph.neighbour_table(index, primes)
        np.testing.assert_array_equal(table, want)
        for mean in (False, True):
            got = model.Neighbours.from_table(table, mean)
            with fused.eager():
                ref = model.Neighbours.from_table(table, mean)
            assert got.reach == ref.reach
            for name in ("index", "weight", "index_t", "weight_t"):
                a, b = getattr(got, name), getattr(ref, name)
                assert a.dtype == b.dtype and torch.equal(a, b), name
