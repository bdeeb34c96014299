"""The GNN (CSR path = PyG's edge_index path, the two heads) and the autoregressive rollout."""

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
def test_the_residual_head_starts_at_zero_and_learns(layer, norm):
    torch.manual_seed(1)
    model = SpacingGNN(5, layer=layer, hidden=8, depth=2, norm=norm, dropout=0.1)
    table = graph.neighbour_table(np.arange(40), [2, 3])
    out = model(torch.randn(40, 5), model.graph_input(table))
    assert out.shape == (40,)
    assert torch.all(out == 0)  # the node's base exactly: baseline (f)
    (out - 1.0).square().sum().backward()  # differentiable end to end, and the head moves first
    assert model.head.weight.grad.abs().sum() > 0 and model.head.bias.grad.abs().sum() > 0


def test_the_spacing_head_starts_at_the_mean_spacing_without_a_softplus():
    torch.manual_seed(1)
    model = SpacingGNN(5, hidden=8, depth=2, head="spacing")
    assert model.head.bias.item() == 1.0
    with torch.no_grad():
        model.head.bias.fill_(-3.0)
    out = model(torch.randn(40, 5), model.graph_input(graph.neighbour_table(np.arange(40), [2, 3])))
    assert torch.all(out < 0)  # nothing clamps a non-positive spacing: it is counted instead
    with pytest.raises(ValueError, match="unknown head"):
        SpacingGNN(5, head="softplus")


def test_a_node_depends_only_on_its_causal_past():
    torch.manual_seed(2)
    model = SpacingGNN(3, hidden=8, depth=2, head="spacing").eval()
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


@pytest.fixture(scope="module")
def classical():
    from trainer.baselines import SmoothedPredictor

    return features.Classical(explicit_a=0.8, smoothed=SmoothedPredictor(X=3000, beta=0.5, a0=0.85, a1=0.9))


def _windows(dataset, classical, starts, horizon, *, primes, window, depth, residual=True):
    return extrapolation.prepare_windows(
        dataset,
        "tune",
        starts,
        horizon,
        primes=primes,
        window=window,
        depth=depth,
        classical=classical,
        smoothed_feature=True,
        residual=residual,
        ar_lags=20,
        ar_fit_len=3000,
        smoothed_ar_fit_len=300,
    )


@pytest.mark.parametrize(("layer", "head"), [("graphconv", "residual"), ("gatv2", "spacing")])
def test_rollout_first_step_equals_the_prediction_inside_the_whole_graph(dataset, classical, layer, head):
    primes, window = [2, 3, 5, 7], 6
    torch.manual_seed(3)
    model = SpacingGNN(window + 3, layer=layer, hidden=8, depth=3, head=head).eval()
    with torch.no_grad():  # a trained-looking head: non-zero output either way
        model.head.weight.normal_(0, 0.1)
    starts = [20_000, 20_700, 21_400]
    win = _windows(
        dataset, classical, starts, 5, primes=primes, window=window, depth=3, residual=head == "residual"
    )
    pred = extrapolation.rollout(model, win, torch.device("cpu"))
    for i, m in enumerate(starts):
        # node m inside a long true-data graph predicts s_m = base_m + out_m, hence delta_{m+1}
        nodes = features.build_nodes(
            dataset,
            [(m - 400, m + 1)],
            primes=primes,
            window=window,
            smoothed=classical.smoothed,
            residual=head == "residual",
        )
        with torch.no_grad():
            out = model(torch.from_numpy(nodes.features), model.graph_input(nodes.table))[-1].item()
        delta_m = features.read_fluctuations(dataset, m, m + 1)[0]
        assert pred[i, 0] == pytest.approx(delta_m + nodes.base[-1] + out - 1.0, abs=1e-5)


def test_the_untrained_residual_model_rolls_out_baseline_smoothed_exactly(dataset, classical):
    torch.manual_seed(4)
    model = SpacingGNN(9, hidden=8, depth=2).eval()
    win = _windows(dataset, classical, [20_000, 21_000, 22_000], 100, primes=[2, 3], window=6, depth=2)
    pred = extrapolation.rollout(model, win, torch.device("cpu"))
    per_window = np.mean((pred - win.true_future) ** 2, axis=1)
    np.testing.assert_allclose(per_window, win.baseline_sq["baseline_smoothed"].mean(axis=1), rtol=1e-12)
    _, saved, _ = extrapolation.score(pred, win)
    assert saved["model"] == pytest.approx(saved["baseline_smoothed"], rel=1e-12)


def test_score_by_hand(dataset, classical):
    win = _windows(dataset, classical, [20_000, 20_500], 4, primes=[2], window=2, depth=1)
    win.baseline_sq = {
        "baseline_index": np.full((2, 4), 0.1),
        "baseline_smoothed": np.array([[0.01] * 4, [0.05] * 4]),
    }
    pred = win.true_future + np.array([[0.1, -0.1, 0.2, 0.0], [0.3, 0.3, 0.3, 0.3]])
    m, per_window, curves = extrapolation.score(pred, win)
    model_w = np.array([(0.01 + 0.01 + 0.04) / 4, 0.09])
    assert m["extrapolation_error"] == pytest.approx(model_w.mean())
    assert m["extrapolation_stderr"] == pytest.approx(model_w.std(ddof=1) / np.sqrt(2))
    assert m["baseline_smoothed"] == pytest.approx(0.03) and m["best_baseline"] == "baseline_smoothed"
    diff = model_w - np.array([0.01, 0.05])
    assert m["paired_diff"] == pytest.approx(diff.mean())
    assert m["paired_stderr"] == pytest.approx(diff.std(ddof=1) / np.sqrt(2))
    assert m["skill"] == pytest.approx(1 - model_w.mean() / 0.03)
    assert m["nonpositive_spacings"] == 0 and 0 <= m["ks_wigner"] <= 1
    assert per_window["start"] == [20_000, 20_500] and per_window["model"] == pytest.approx(model_w.tolist())
    assert curves["k"] == [1, 2, 3, 4]
    assert curves["model"] == pytest.approx(
        [(0.01 + 0.09) / 2, (0.01 + 0.09) / 2, (0.04 + 0.09) / 2, 0.09 / 2]
    )
    # A spacing of -0.05 between delta_M and the first prediction is counted, not hidden.
    pred[0, 0] = win.delta_true[0, -5] - 1.05
    assert extrapolation.score(pred, win)[0]["nonpositive_spacings"] == 1


def test_window_baselines_use_the_real_zeros_after_each_start(dataset, classical):
    win = _windows(dataset, classical, [20_000, 21_000], 100, primes=[2], window=2, depth=1)
    delta = features.read_fluctuations(dataset, 20_001, 20_101)
    assert win.baseline_sq["baseline_index"][0] == pytest.approx(delta**2)
    assert win.baseline_sq["baseline_smoothed"][0] == pytest.approx(
        (delta - classical.smoothed.predict(np.arange(20_001, 20_101))) ** 2
    )
    means = {k: v.mean() for k, v in win.baseline_sq.items()}
    # MATH.md §5: the sharp sum beats the index baseline; (f) beats both.
    assert means["baseline_explicit"] < means["baseline_index"]
    assert means["baseline_smoothed"] < means["baseline_explicit"]
