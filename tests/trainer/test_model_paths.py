"""SpacingGNN's fast paths (trainer.model.Neighbours, the row-chunked recomputation) against
PyG's own CSR aggregation: the same outputs and parameter gradients, frozen layers left alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from trainer.model import SpacingGNN

from trainer import graph, model


def _outputs_and_grads(net, x, g):
    net.zero_grad(set_to_none=True)
    out = net(x, g)
    (out * torch.arange(len(out), dtype=out.dtype)).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("layer", ["graphconv", "sage"])
@pytest.mark.parametrize("norm", ["layer", "none"])
@pytest.mark.parametrize("depth", [1, 3])
def test_gather_and_chunked_paths_equal_the_csr_path(monkeypatch, layer, norm, depth):
    # Nodes with gaps (several runs, like a batch of clusters); chunks of 37 rows so most chunks
    # have a halo and some edges cross chunk boundaries.
    torch.manual_seed(0)
    index = np.sort(np.random.default_rng(0).choice(400, 250, replace=False))
    table = graph.neighbour_table(index, [2, 3, 5, 7])
    net = SpacingGNN(6, layer=layer, hidden=8, depth=depth, norm=norm)
    torch.nn.init.normal_(net.head.weight)  # the residual head starts at 0: give it a slope
    torch.nn.init.normal_(net.skip.weight)
    x = torch.randn(len(index), 6)
    want, want_grads = _outputs_and_grads(net, x, graph.adjacency(table))
    monkeypatch.setattr(model, "CHUNK_ROWS", 37)
    for chunked_above in (10**9, 0):  # the plain gather path, then the chunked one
        monkeypatch.setattr(model, "CHUNKED_ABOVE", chunked_above)
        got, grads = _outputs_and_grads(net, x, net.graph_input(table))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        assert grads.keys() == want_grads.keys()
        for name, g in grads.items():
            # The gradients reach ~1e5 (the loss weighs row i by i); an element near zero is a
            # difference of such terms, so float32 sums in another order (another BLAS, another
            # vector width) move it by ~1e-7 of the tensor's largest element, not of itself.
            want_g = want_grads[name]
            atol = 1e-5 * float(want_g.abs().max())
            torch.testing.assert_close(g, want_g, rtol=1e-4, atol=atol, msg=name)


def _chunked_net(monkeypatch, seed: int, nodes: int, **kwargs):
    """A small SpacingGNN forced onto the row-chunked path (chunks of 16 rows) and its graph over
    `nodes` consecutive zeros with primes 2 and 3; the head given a slope (it starts at 0)."""
    monkeypatch.setattr(model, "CHUNKED_ABOVE", 0)
    monkeypatch.setattr(model, "CHUNK_ROWS", 16)
    torch.manual_seed(seed)
    table = graph.neighbour_table(np.arange(nodes), [2, 3])
    net = SpacingGNN(4, **kwargs)
    torch.nn.init.normal_(net.head.weight)
    return net, net.graph_input(table)


def test_chunked_path_leaves_frozen_layers_without_gradient(monkeypatch):
    net, g = _chunked_net(monkeypatch, 1, 60, hidden=8, depth=3)
    for p in [*net.encoder.parameters(), *net.convs[0].parameters()]:
        p.requires_grad_(False)
    out = net(torch.randn(60, 4), g)
    out.square().sum().backward()
    assert net.encoder.weight.grad is None and net.convs[0].lin_rel.weight.grad is None
    assert net.convs[1].lin_rel.weight.grad.abs().sum() > 0 and net.head.weight.grad.abs().sum() > 0


def test_neighbours_transpose_and_reach():
    index = np.array([0, 1, 2, 5, 6, 9])
    table = graph.neighbour_table(index, [1, 3])
    nb = model.Neighbours.from_table(table, mean=True)
    assert nb.reach == 1  # edges span 3 zeros, but the gaps hold no nodes: 1 row back
    dense = torch.zeros(6, 6)
    for i in range(6):
        for j in range(2):
            dense[i, nb.index[i, j]] += nb.weight[i, j]
    dense_t = torch.zeros(6, 6)
    for s in range(6):
        for j in range(2):
            dense_t[nb.index_t[s, j], s] += nb.weight_t[s, j]
    torch.testing.assert_close(dense, dense_t)
    assert dense[3].sum() == 1.0 and dense[3, 2] == 1.0  # zero 5: only zero 2 (5 - 3), a mean of one
    assert dense[0].sum() == 0.0  # zero 0 has no neighbour: aggregates nothing


def test_chunked_recomputation_replays_the_dropout_masks(monkeypatch):
    # gradcheck compares the backward (which recomputes every chunk) with finite differences of
    # the forward; both see the same masks only if the recomputation replays each chunk's RNG
    # state. Without the replay the analytic gradient uses other masks and gradcheck fails.
    net, g = _chunked_net(monkeypatch, 2, 50, hidden=6, depth=2, dropout=0.4)
    net = net.double().train()

    def run(x):
        torch.manual_seed(5)  # the same masks on every call gradcheck makes
        return net(x, g)

    x = torch.randn(50, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(run, (x,), eps=1e-6, atol=1e-5)
    assert not torch.equal(run(x), net.eval()(x, g))  # dropout did act in training
    net.train()
    out = run(x)
    torch.rand(3)  # something else draws between the forward and the backward
    before = torch.get_rng_state()
    out.sum().backward()
    assert torch.equal(before, torch.get_rng_state())  # the replay does not move the generator


def test_the_chunked_path_hands_its_buffers_out_again_only_once_they_are_free(monkeypatch):
    net, g = _chunked_net(monkeypatch, 4, 60, hidden=8, depth=3)
    x = torch.randn(60, 4)

    def step():
        net.zero_grad(set_to_none=True)
        out = net(x, g)
        out.square().sum().backward()
        return out.detach().clone(), {n: p.grad.clone() for n, p in net.named_parameters()}  # holds no buffer

    first, grads = step()
    kept = [b.data_ptr() for b in g.buffers._kept]
    # depth 3: the two layer outputs, the model's output, the gradient of the second layer's
    # output; that of the first's took the second's output's memory once the last segment was done
    assert len(kept) == 4
    again, grads_again = step()  # the next step: the same memory, the same results bit for bit
    assert [b.data_ptr() for b in g.buffers._kept] == kept
    assert torch.equal(again, first) and all(torch.equal(grads_again[n], grads[n]) for n in grads)
    # Two graphs alive at once: the second forward must not write the first one's saved outputs.
    net.zero_grad(set_to_none=True)
    a, b = net(x, g), net(x, g)
    assert len(g.buffers._kept) > len(kept)
    (a.square().sum() + b.square().sum()).backward()
    assert torch.equal(a.detach(), first) and torch.equal(b.detach(), first)
    for name, p in net.named_parameters():
        torch.testing.assert_close(p.grad, 2 * grads[name], rtol=1e-6, atol=1e-6, msg=name)


@pytest.mark.parametrize("layer", ["graphconv", "sage"])
def test_a_layer_holds_pygs_parameters_drawn_as_pyg_draws_them(layer):
    # SpacingGNN holds a GraphConv/SAGEConv layer as its two maps without importing PyG: the same
    # state_dict keys and, from the same seed, the same initial values bit for bit, and the RNG
    # left where PyG's conv leaves it (the layers after it draw the same too).
    from torch_geometric.nn import GraphConv, SAGEConv

    torch.manual_seed(3)
    ours = model._conv(layer, 16)
    after_ours = torch.rand(4)
    torch.manual_seed(3)
    pyg = GraphConv(16, 16, aggr="add") if layer == "graphconv" else SAGEConv(16, 16, aggr="mean")
    after_pyg = torch.rand(4)
    want = pyg.state_dict()
    got = ours.state_dict()
    assert list(got) == list(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key
    assert torch.equal(after_ours, after_pyg)


@pytest.mark.parametrize("layer", ["graphconv", "sage"])
def test_pygs_own_conv_runs_on_the_layers_parameters_not_copies(layer):
    torch.manual_seed(4)
    net = SpacingGNN(5, layer=layer, hidden=8, depth=2, head="spacing")  # a head that is not zero
    table = graph.neighbour_table(np.arange(40), [2, 3])
    x = torch.randn(40, 5)
    rng = torch.get_rng_state()
    before = net(x, graph.edge_index(table))  # PyG's conv made here, on first use
    assert torch.equal(torch.get_rng_state(), rng)  # its own initial draws left no trace
    with torch.no_grad():
        net.convs[0].maps()[0].weight.mul_(2.0)  # one of the layer's parameters moves ...
    after = net(x, graph.edge_index(table))
    assert not torch.allclose(before, after)  # ... and PyG's conv sees it
    assert len(list(net.parameters())) == len(net.state_dict())  # no second set of parameters
    torch.testing.assert_close(after, net(x, net.graph_input(table)), rtol=1e-5, atol=1e-6)


def test_a_graphconv_trial_does_not_import_torch_geometric():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, torch\n"
        "from trainer import graph, training\n"
        "from trainer.model import SpacingGNN\n"
        "net = SpacingGNN(5, hidden=8, depth=2)\n"
        "table = graph.neighbour_table(np.arange(40), [2, 3])\n"
        "net(torch.randn(40, 5), net.graph_input(table)).sum().backward()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('torch_geometric', 'torch._dynamo'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
