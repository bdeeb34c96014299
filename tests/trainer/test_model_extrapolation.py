"""The GNN (CSR path = PyG's edge_index path, positive output) and the autoregressive rollout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from trainer.model import SpacingGNN

from trainer import extrapolation, features, graph


@pytest.mark.parametrize("layer", ["graphconv", "sage"])
def test_csr_aggregation_equals_pyg_edge_index_aggregation(layer):
    torch.manual_seed(0)
    table = graph.neighbour_table(np.arange(50), [2, 3, 5, 7])
    model = SpacingGNN(6, layer=layer, hidden=8, depth=3).eval()
    x = torch.randn(50, 6)
    via_csr = model(x, graph.adjacency(table))
    via_edges = model(x, graph.edge_index(table))
    torch.testing.assert_close(via_csr, via_edges, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer", ["graphconv", "sage", "gatv2"])
@pytest.mark.parametrize("norm", ["none", "layer", "batch"])
def test_output_is_a_positive_spacing_and_starts_near_one(layer, norm):
    torch.manual_seed(1)
    model = SpacingGNN(5, layer=layer, hidden=8, depth=2, norm=norm, dropout=0.1)
    table = graph.neighbour_table(np.arange(40), [2, 3])
    out = model(torch.randn(40, 5), model.graph_input(table))
    assert out.shape == (40,)
    assert torch.all(out > 0)
    out.sum().backward()  # differentiable end to end
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_a_node_depends_only_on_its_causal_past():
    torch.manual_seed(2)
    model = SpacingGNN(3, hidden=8, depth=2).eval()
    table = graph.neighbour_table(np.arange(30), [2, 3])
    g = model.graph_input(table)
    x = torch.randn(30, 3)
    base = model(x, g)
    x2 = x.clone()
    x2[20] += 5.0  # a later node changes ...
    changed = model(x2, g)
    torch.testing.assert_close(changed[:20], base[:20])  # ... earlier predictions do not
    assert not torch.allclose(changed[20:], base[20:])


@pytest.fixture(scope="module")
def dataset(odlyzko_small):
    from trainer.data.dataset import open_dataset

    return open_dataset(odlyzko_small)


@pytest.mark.parametrize("layer", ["graphconv", "gatv2"])
def test_rollout_first_step_equals_the_prediction_inside_the_whole_graph(dataset, layer):
    primes, window = [2, 3, 5, 7], 6
    torch.manual_seed(3)
    model = SpacingGNN(window + 3, layer=layer, hidden=8, depth=3).eval()
    starts = [20_000, 20_700, 21_400]
    win = extrapolation.prepare_windows(
        dataset, starts, 5, primes=primes, window=window, depth=3, explicit_a=0.8
    )
    pred_x = extrapolation.rollout(model, win, torch.device("cpu"))
    for i, m in enumerate(starts):
        # node m inside a long true-data graph predicts s_m, hence x_{m+1}
        nodes = features.build_nodes(
            dataset, [(m - 400, m + 1)], primes=primes, window=window, explicit_a=0.8
        )
        with torch.no_grad():
            s_m = model(torch.from_numpy(nodes.features), model.graph_input(nodes.table))[-1].item()
        x_m = features.read_unfolded(dataset, m, m + 1)[0]
        assert pred_x[i, 0] == pytest.approx(x_m + s_m, abs=1e-5)
        # later steps build on predictions: strictly increasing positions
        assert np.all(np.diff(np.concatenate([[x_m], pred_x[i]])) > 0)


def test_extrapolation_metrics_by_hand(dataset):
    win = extrapolation.prepare_windows(
        dataset, [20_000, 20_500], 4, primes=[2], window=2, depth=1, explicit_a=None
    )
    truth = win.true_future
    pred = truth + np.array([[0.1, -0.1, 0.2, 0.0], [0.3, 0.3, 0.3, 0.3]])
    baselines = {
        "baseline_index": np.array([0.1, 0.12]),
        "baseline_ar": np.array([0.05, 0.07]),
        "baseline_explicit": np.array([0.01, 0.03]),
    }
    m = extrapolation.extrapolation_metrics(pred, win, baselines)
    per_window = np.array([(0.01 + 0.01 + 0.04) / 4, 0.09])
    assert m["extrapolation_error"] == pytest.approx(per_window.mean())
    assert m["extrapolation_stderr"] == pytest.approx(per_window.std(ddof=1) / np.sqrt(2))
    assert m["baseline_explicit"] == pytest.approx(0.02)
    assert m["skill"] == pytest.approx(1 - per_window.mean() / 0.02)
    assert 0 <= m["ks_wigner"] <= 1


def test_baseline_errors_use_the_real_zeros_after_each_start(dataset):
    from trainer.unfolding import fluctuations

    errs = extrapolation.baseline_errors(dataset, [20_000, 21_000], 100, explicit_a=0.8)
    x = features.read_unfolded(dataset, 20_001, 20_101)
    delta = fluctuations(x, 20_001)
    assert errs["baseline_index"][0] == pytest.approx(np.mean(delta**2))
    # the explicit formula beats the index baseline on real zeros (MATH.md §5: 0.014 vs 0.111)
    assert np.all(errs["baseline_explicit"] < errs["baseline_index"])
