"""The fused CPU layer kernel (trainer.fused, csrc/fused_layer.cpp) against SpacingGNN's eager
torch layer: the same outputs and gradients up to float rounding (float64 to 1e-12), the
gradient against finite differences, frozen parameters left alone, the layers it must not take,
and the fallback to eager torch where it cannot be built."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from trainer.model import Neighbours, SpacingGNN

from trainer import fused, graph, model

pytestmark = pytest.mark.skipif(fused.library() is None, reason="needs g++ to build trainer/csrc/*.cpp")


@pytest.fixture(autouse=True)
def one_thread():
    """Torch on one thread (a trial's cpu_threads: 1) unless a test sets more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def calls(monkeypatch):
    """How many times the kernels ran the layers: [0] a whole layer (FusedLayer), [1] a layer
    rebuilt from what its chunked forward pass kept (FusedLayerKept), [2] the whole model in a
    training step (DirectModel.forward)."""
    count = [0, 0, 0]
    functions = (fused.FusedLayer, fused.FusedLayerKept)  # the second a subclass: both looked up first
    applies = [function.apply for function in functions]
    for k, (function, apply) in enumerate(zip(functions, applies, strict=True)):

        def counted(*args, _apply=apply, _k=k):
            count[_k] += 1
            return _apply(*args)

        monkeypatch.setattr(function, "apply", counted)
    direct = fused.DirectModel.forward

    def counted_direct(self, *args):
        count[2] += 1
        return direct(self, *args)

    monkeypatch.setattr(fused.DirectModel, "forward", counted_direct)
    return count


def _run(net, x, g):
    net.zero_grad(set_to_none=True)
    out = net(x, g)
    (out * torch.linspace(-1, 2, len(out), dtype=out.dtype)).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def _assert_close_to_rounding(got, want, name=""):
    """Equal up to float rounding, on the tensor's own scale: sums of thousands of terms in
    another order (and erf, exp to ~1 ulp) differ by a few ulp of the largest term, which is
    much more than a few ulp of an entry near 0."""
    eps = torch.finfo(want.dtype).eps
    scale = float(want.abs().max()) + 1.0
    torch.testing.assert_close(
        got, want, rtol=1e3 * eps, atol=1e3 * eps * scale, msg=lambda m: f"{name}: {m}"
    )


def _net_and_graph(layer, norm, residual, hidden, dtype, nodes=300):
    torch.manual_seed(0)
    index = np.sort(np.random.default_rng(0).choice(nodes * 3 // 2, nodes, replace=False))  # gaps, as a batch
    table = graph.neighbour_table(index, [2, 3, 5, 7, 11, 13])
    net = SpacingGNN(7, layer=layer, hidden=hidden, depth=3, norm=norm, residual=residual).to(dtype)
    for p in net.parameters():  # away from the zero-initialised head, and LayerNorm's 1 and 0
        torch.nn.init.normal_(p, std=0.4)
    return net, torch.randn(len(index), 7, dtype=dtype), net.graph_input(table)


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(
    ("layer", "norm", "residual", "hidden", "dtype"),
    [
        ("graphconv", "layer", True, 64, torch.float32),
        ("sage", "layer", True, 32, torch.float32),
        ("graphconv", "none", False, 16, torch.float32),
        ("graphconv", "layer", True, 128, torch.float32),  # two GELU groups of 8 vectors a row on AVX2
        ("graphconv", "layer", True, 64, torch.float64),
        ("sage", "none", False, 32, torch.float64),
    ],
)
def test_the_kernel_equals_the_eager_layer(monkeypatch, calls, chunked, layer, norm, residual, hidden, dtype):
    if chunked:  # row chunks of 37 with a halo: the kernel's input has more rows than its output
        monkeypatch.setattr(model, "CHUNKED_ABOVE", 0)
        monkeypatch.setattr(model, "CHUNK_ROWS", 37)
    net, x, g = _net_and_graph(layer, norm, residual, hidden, dtype)
    with fused.eager():
        want, want_grads = _run(net, x, g)
    assert calls == [0, 0, 0]
    got, grads = _run(net, x, g)
    chunks = len(list(model._chunks(len(x), g.reach)))
    # Chunked: each chunk again in the backward, the top layer's from what its forward kept.
    assert calls == ([3 * chunks + 2 * chunks, chunks, 0] if chunked else [0, 0, 1])
    _assert_close_to_rounding(got, want)
    assert grads.keys() == want_grads.keys()
    for name, grad in grads.items():
        _assert_close_to_rounding(grad, want_grads[name], name)
    again, grads_again = _run(net, x, g)  # one thread, sums in a fixed order: bit for bit
    assert torch.equal(again, got) and all(torch.equal(grads_again[n], grads[n]) for n in grads)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_on_more_threads_each_takes_fixed_rows(monkeypatch, calls, threads, chunked, dtype):
    """With torch on T threads the layer and the encoder cut the rows into T ranges (of 512 rows
    or more): the forward equals one thread's bit for bit (each row is its own), the gradients
    equal the eager layer's up to rounding, and every run on T threads equals the last bit for
    bit (each range's sums are added in range order)."""
    if chunked:  # chunks of 1700 rows and a halo of 13: three ranges of the input rows
        monkeypatch.setattr(model, "CHUNKED_ABOVE", 0)
        monkeypatch.setattr(model, "CHUNK_ROWS", 1700)
    net, x, g = _net_and_graph("graphconv", "layer", True, 32, dtype, nodes=4000)
    with fused.eager():
        want, want_grads = _run(net, x, g)
    one, one_grads = _run(net, x, g)
    torch.set_num_threads(threads)
    got, grads = _run(net, x, g)
    again, grads_again = _run(net, x, g)
    torch.set_num_threads(1)
    chunks = len(list(model._chunks(len(x), g.reach)))
    assert calls == ([5 * chunks * 3, chunks * 3, 0] if chunked else [0, 0, 3])  # every layer by the kernels
    assert torch.equal(got, one)
    _assert_close_to_rounding(got, want)
    assert grads.keys() == want_grads.keys() == one_grads.keys()
    for name, grad in grads.items():
        _assert_close_to_rounding(grad, want_grads[name], name)
    assert torch.equal(again, got) and all(torch.equal(grads_again[n], grads[n]) for n in grads)
    # The weight gradients are summed in another order than on one thread: the rows were cut.
    assert not all(torch.equal(grads[n], one_grads[n]) for n in grads)


def test_the_kernel_runs_every_layer_of_the_default_model(calls):
    net, x, g = _net_and_graph("graphconv", "layer", True, 64, torch.float32)
    _run(net, x, g)
    assert calls == [0, 0, 1]  # a training step: the direct path
    with torch.no_grad():
        net.eval()(x, g)
    assert calls == [3, 0, 1]  # evaluation: layer by layer


def test_gradient_against_finite_differences_with_a_halo():
    torch.manual_seed(2)
    table = graph.neighbour_table(np.arange(60), [2, 3, 5])
    nb = Neighbours.from_table(table, mean=False).rows(20, 25, 45)  # rows 25..44 from inputs 20..44
    hidden = 32
    d = torch.float64
    h = torch.randn(25, hidden, dtype=d, requires_grad=True)
    params = [
        torch.randn(s, dtype=d, requires_grad=True) * 0.3
        for s in ((hidden, hidden), (hidden,), (hidden, hidden))
    ]
    params = [p.detach().requires_grad_() for p in params]
    gamma = (1 + 0.3 * torch.randn(hidden, dtype=d)).requires_grad_()
    beta = (0.3 * torch.randn(hidden, dtype=d)).requires_grad_()

    def layer(h, w_rel, b_rel, w_root, gamma, beta):
        return fused.FusedLayer.apply(h, w_rel, b_rel, w_root, gamma, beta, nb, 1e-5, True, True, None)

    assert layer(h, *params, gamma, beta).shape == (20, hidden)
    assert torch.autograd.gradcheck(layer, (h, *params, gamma, beta), eps=1e-6, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize(
    ("norm", "residual", "dtype"), [(True, True, torch.float32), (False, False, torch.float64)]
)
def test_the_layer_rebuilt_from_what_it_kept_is_the_layer(norm, residual, dtype):
    """FusedLayerKept (the chunked path's top layer in the backward pass) from the xhat and 1/std
    the no-grad forward wrote: the same output and gradients as FusedLayer up to rounding (the
    compiler may contract GELU''s sum into an FMA in one kernel and not in the other)."""
    torch.manual_seed(3)
    hidden, rows = 32, 700
    nb = Neighbours.from_table(graph.neighbour_table(np.arange(rows), [2, 3, 5, 7]), mean=False).rows(
        40, 50, rows
    )
    h = torch.randn(rows - 40, hidden, dtype=dtype, requires_grad=True)
    params = [
        (torch.randn(s, dtype=dtype) * 0.3).requires_grad_()
        for s in ((hidden, hidden), (hidden,), (hidden, hidden))
    ]
    gamma = (1 + 0.3 * torch.randn(hidden, dtype=dtype)).requires_grad_() if norm else None
    beta = (0.3 * torch.randn(hidden, dtype=dtype)).requires_grad_() if norm else None
    args = (h, *params, gamma, beta, nb, 1e-5, residual)
    leaves = [t for t in (h, *params, gamma, beta) if t is not None]
    gy = torch.randn(len(nb), hidden, dtype=dtype)

    want = fused.FusedLayer.apply(*args, True, None)
    want_grads = torch.autograd.grad(want, leaves, gy)
    kept = fused.Kept(torch.empty(rows, hidden, dtype=dtype), torch.empty(rows, dtype=dtype))
    with torch.no_grad():  # the forward pass writes rows [50, rows) of kept, as one chunk
        assert torch.equal(fused.FusedLayer.apply(*args, False, kept.rows(nb)), want)
    got = fused.FusedLayerKept.apply(*args, *kept.rows(nb))
    grads = torch.autograd.grad(got, leaves, gy)
    _assert_close_to_rounding(got, want)
    for g, w in zip(grads, want_grads, strict=True):
        _assert_close_to_rounding(g, w)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_forward_writes_what_it_keeps_at_any_alignment(dtype):
    """The forward streams xhat past the caches where a row starts on 64 bytes (every tensor
    torch makes here) and stores it plainly elsewhere (a streaming store to any other address is
    a fault): kept rows one element off the alignment get the same values."""
    torch.manual_seed(4)
    hidden, rows = 32, 200
    nb = Neighbours.from_table(graph.neighbour_table(np.arange(rows), [2, 3, 5]), mean=False)
    h = torch.randn(rows, hidden, dtype=dtype)
    params = [torch.randn(s, dtype=dtype) * 0.3 for s in ((hidden, hidden), (hidden,), (hidden, hidden))]
    gamma, beta = 1 + 0.3 * torch.randn(hidden, dtype=dtype), 0.3 * torch.randn(hidden, dtype=dtype)
    args = (h, *params, gamma, beta, nb, 1e-5, True, False)
    written = []
    for offset in (0, 1):
        saved = torch.full((rows * hidden + offset,), float("nan"), dtype=dtype)[offset:].view(rows, hidden)
        rstd = torch.full((rows,), float("nan"), dtype=dtype)
        assert (saved.data_ptr() % 64 == 0) == (offset == 0)
        with torch.no_grad():
            y = fused.FusedLayer.apply(*args, (saved, rstd))
        written.append((y, saved, rstd))
    for got, want in zip(written[1], written[0], strict=True):
        assert torch.equal(got, want) and torch.isfinite(got).all()


def test_the_chunked_top_layer_keeps_its_xhat_where_its_input_gradient_goes_next(monkeypatch):
    """The top segment's input gradient is written over the top layer's kept xhat (_RowChunks'
    donor): the full-batch path holds no more [m, hidden] tensors than it would without keeping
    it (the depth - 1 segment outputs, then the input gradients, each in the memory of one no
    longer read), step after step, and the gradients stay the eager layer's (the tests above)."""
    monkeypatch.setattr(model, "CHUNKED_ABOVE", 0)
    monkeypatch.setattr(model, "CHUNK_ROWS", 97)
    net, x, g = _net_and_graph("graphconv", "layer", True, 32, torch.float32, nodes=400)
    weights = torch.linspace(-1, 2, len(x))
    loss = None
    for _ in range(3):
        net.zero_grad(set_to_none=True)
        # As in the training loop, the last step's graph is alive through this forward (its loss
        # is rebound after it): what it still holds cannot be handed out again.
        out = net(x, g)
        loss = (out * weights).sum()
        loss.backward()
    wide = [b for b in g.buffers._kept if b.shape == (len(x), 32)]
    assert len(wide) == 3


def _per_layer(net):
    """net with its training steps layer by layer (each part its own autograd Function)."""
    net._direct = None
    return net


@pytest.mark.parametrize(
    ("layer", "norm", "residual", "hidden", "dtype", "threads"),
    [
        ("graphconv", "layer", True, 64, torch.float32, 1),
        ("sage", "layer", True, 32, torch.float32, 1),
        ("graphconv", "none", False, 16, torch.float32, 1),
        ("graphconv", "layer", True, 64, torch.float64, 1),
        ("graphconv", "layer", True, 32, torch.float32, 2),
    ],
)
def test_the_direct_path_is_the_per_layer_path_bit_for_bit(
    calls, layer, norm, residual, hidden, dtype, threads
):
    """The same kernels with the same arguments: the same output and gradients, bit for bit,
    also where .grad already holds something (the gradients are added, as autograd adds)."""
    torch.set_num_threads(threads)
    net, x, g = _net_and_graph(layer, norm, residual, hidden, dtype, nodes=1500)
    ref, _, _ = _net_and_graph(layer, norm, residual, hidden, dtype, nodes=1500)
    _per_layer(ref)
    for step in range(3):  # the workspace made at the first step, used again at the others
        want, want_grads = _run(ref, x, g)
        got, grads = _run(net, x, g)
        assert torch.equal(got, want)
        assert grads.keys() == want_grads.keys()
        assert all(torch.equal(grads[n], want_grads[n]) for n in grads), step
    assert calls == [3 * 3, 0, 3]
    for m in (net, ref):  # a second backward adds to .grad
        out = m(x, g)
        (out * torch.linspace(-1, 2, len(out), dtype=dtype)).sum().backward()
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(net.parameters(), ref.parameters(), strict=True))


def test_the_direct_path_with_frozen_layers_and_other_sizes(calls):
    """Frozen bottom layers get no gradient and the ones above the same as layer by layer; a
    bigger batch grows the workspace, a smaller one uses part of it; two forwards before their
    backwards (the first holds the workspace) each get theirs right."""
    net, x, g = _net_and_graph("graphconv", "layer", True, 32, torch.float32, nodes=600)
    ref, _, _ = _net_and_graph("graphconv", "layer", True, 32, torch.float32, nodes=600)
    _per_layer(ref)
    for m in (net, ref):
        m.freeze_bottom_layers()
    small, gs = x[:200], _net_and_graph("graphconv", "layer", True, 32, torch.float32, nodes=200)[2]
    big, gb = _net_and_graph("graphconv", "layer", True, 32, torch.float32, nodes=900)[1:]
    for xs, gr in ((x, g), (big, gb), (small, gs)):
        want, want_grads = _run(ref, xs, gr)
        got, grads = _run(net, xs, gr)
        assert "encoder.weight" not in grads and "convs.0.lin_rel.weight" not in grads
        assert torch.equal(got, want) and grads.keys() == want_grads.keys()
        assert all(torch.equal(grads[n], want_grads[n]) for n in grads)
    for m in (net, ref):
        m.zero_grad(set_to_none=True)
        first, second = m(x, g), m(big, gb)
        (first.sum() + (second * 2).sum()).backward()
    assert calls[2] == 3 + 2
    assert all(
        (p.grad is None and q.grad is None) or torch.equal(p.grad, q.grad)
        for p, q in zip(net.parameters(), ref.parameters(), strict=True)
    )


@pytest.mark.parametrize("threads", [1, 2])
def test_a_frozen_middle_layer_passes_gradients_to_the_layers_below(threads):
    """A layer whose weights are frozen still sends its input gradient down: its backward has the
    input rows' products and no weight-gradient ones (the products the one-thread backward spreads
    its fetches over; with none it fetches nothing). The direct path equals the per-layer path
    bit for bit, and the frozen layer gets no gradient."""
    torch.set_num_threads(threads)
    net, x, g = _net_and_graph("graphconv", "layer", True, 32, torch.float32, nodes=1500)
    ref, _, _ = _net_and_graph("graphconv", "layer", True, 32, torch.float32, nodes=1500)
    _per_layer(ref)
    for m in (net, ref):
        for p in (*m.convs[1].parameters(), *m.norms[1].parameters()):
            p.requires_grad_(False)
    want, want_grads = _run(ref, x, g)
    got, grads = _run(net, x, g)
    assert "convs.1.lin_rel.weight" not in grads and "convs.0.lin_rel.weight" in grads
    assert torch.equal(got, want) and grads.keys() == want_grads.keys()
    assert all(torch.equal(grads[n], want_grads[n]) for n in grads)


def test_the_direct_path_refuses_a_second_backward_and_leaves_what_it_does_not_take(calls):
    net, x, g = _net_and_graph("graphconv", "layer", True, 32, torch.float32)
    loss = net(x, g).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="second backward"):
        loss.backward()
    assert calls == [0, 0, 1]
    x_grad = x.clone().requires_grad_(True)  # a gradient for the features: layer by layer
    net(x_grad, g).sum().backward()
    assert x_grad.grad is not None and calls == [3, 0, 1]
    with torch.no_grad():
        net(x, g)  # no backward to come: layer by layer, nothing kept
    net.eval()(x, g).sum().backward()  # evaluation mode: layer by layer
    assert calls == [9, 0, 1]
    for p in net.parameters():
        p.requires_grad_(False)
    assert not net._direct.takes(x, g)  # nothing to train
    assert not net._direct.takes(x.double(), g)  # another dtype than the parameters'


def test_a_copy_of_the_model_trains_its_own_parameters():
    """AveragedModel deep-copies the model: the copy's direct path holds the copy's modules and
    no workspace of the original's."""
    import copy

    net, x, g = _net_and_graph("graphconv", "layer", True, 32, torch.float32)
    net(x, g).sum().backward()
    twin = copy.deepcopy(net)
    assert twin._direct._spare is None and net._direct._spare is not None
    twin.zero_grad(set_to_none=True)
    twin(x, g).sum().backward()
    assert all(p.grad is not None for p in twin.parameters())
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(twin.parameters(), net.parameters(), strict=True))


def test_a_second_backward_of_the_same_graph_rebuilds_the_top_layer_whole(monkeypatch, calls):
    """After the first backward the top layer's kept rows hold its input gradient, so a second
    backward of the graph (retain_graph) recomputes the layer with its products: the same
    gradients up to rounding."""
    monkeypatch.setattr(model, "CHUNKED_ABOVE", 0)
    monkeypatch.setattr(model, "CHUNK_ROWS", 97)
    net, x, g = _net_and_graph("graphconv", "layer", True, 32, torch.float32, nodes=400)
    out = net(x, g)
    loss = (out * torch.linspace(-1, 2, len(out))).sum()
    chunks = len(list(model._chunks(len(x), g.reach)))
    grads = []
    for retain in (True, False):  # the chunked path adds to .grad (as torch's reentrant checkpoint)
        net.zero_grad(set_to_none=True)
        loss.backward(retain_graph=retain)
        grads.append({n: p.grad.clone() for n, p in net.named_parameters()})
        assert calls == ([5 * chunks, chunks, 0] if retain else [8 * chunks, chunks, 0])
    first, second = grads
    for name, grad in second.items():
        _assert_close_to_rounding(grad, first[name], name)


def test_frozen_parameters_get_no_gradient(calls):
    net, x, g = _net_and_graph("graphconv", "layer", True, 32, torch.float32)
    net.freeze_bottom_layers()  # the encoder and the first layer
    with fused.eager():
        _, want = _run(net, x, g)
    _, got = _run(net, x, g)
    assert calls == [0, 0, 1]
    assert (
        got.keys() == want.keys() and "convs.0.lin_rel.weight" not in got and "convs.1.lin_rel.weight" in got
    )
    for name, grad in got.items():
        _assert_close_to_rounding(grad, want[name], name)


def test_layers_the_kernel_does_not_take(calls):
    net, x, g = _net_and_graph("graphconv", "layer", True, 32, torch.float32)
    h = torch.randn(len(x), 32)
    norm = net.norms[0]
    assert fused.supported(h, g.index, norm, 0.0, True)
    assert not fused.supported(h, g.index, norm, 0.1, True)  # dropout to draw
    assert fused.supported(h, g.index, norm, 0.1, False)  # ... but not in eval
    assert not fused.supported(torch.randn(len(x), 8), g.index, norm, 0.0, True)  # width 8: none compiled
    assert not fused.supported(h, g.index.long(), norm, 0.0, True)
    assert not fused.supported(h, g.index, torch.nn.BatchNorm1d(32), 0.0, True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused.supported(h, g.index, norm, 0.0, True)
    net.dropout.p = 0.1
    _run(net.train(), x, g)
    assert calls == [0, 0, 0]


_PROBE = (
    "import sys, torch; from trainer import fused; lib = fused.library(); print(lib is not None);"
    "print(sorted(p.name for p in fused._cache_dir().glob('*.so')))"
)


def _probe(tmp_path, **env):
    run_env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), **env}
    return subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, env=run_env, check=True
    )


def test_the_kernels_vectors_are_the_cores_widest():
    """A vector wider than the core's registers is a memory object to GCC: 64-byte vectors on an
    AVX2 core made the layers ~15x slower than these (docs/speed.md, session 12)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), None)
    if flags is None:
        pytest.skip("no x86 flags in /proc/cpuinfo: the width rule is written for x86 cores")
    widest = 64 if "avx512f" in flags else 32 if "avx" in flags else 16
    assert fused.library().zs_vector_bytes() == widest


def test_built_once_per_machine_into_the_cache(tmp_path):
    first = _probe(tmp_path)
    built = (tmp_path / "zeta-swarm").glob("kernels-*.so")
    (so,) = list(built)
    stamp = so.stat().st_mtime_ns
    second = _probe(tmp_path)
    assert first.stdout.splitlines()[0] == second.stdout.splitlines()[0] == "True"
    assert so.stat().st_mtime_ns == stamp and not list((tmp_path / "zeta-swarm").glob(".kernels-*"))


def test_without_a_compiler_or_when_turned_off_layers_run_eager(tmp_path):
    no_compiler = _probe(tmp_path, CXX=str(tmp_path / "no-such-g++"))
    assert no_compiler.stdout.splitlines()[0] == "False"
    assert "the CPU kernels did not build" in no_compiler.stderr and "eager torch" in no_compiler.stderr
    off = _probe(tmp_path, ZETA_SWARM_FUSED="0")
    assert off.stdout.splitlines() == ["False", "[]"] and off.stderr == ""


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_gelu_kernel_equals_torchs(dtype):
    torch.manual_seed(3)
    # 1001 values: a tail shorter than a vector; the range reaches where erf saturates and exp underflows
    x = torch.cat([torch.randn(900, dtype=dtype) * 3, torch.linspace(-120, 120, 101, dtype=dtype)])
    x.requires_grad_()
    gy = torch.randn_like(x)
    want = torch.nn.functional.gelu(x)
    (want_grad,) = torch.autograd.grad(want, x, gy)
    got = fused.gelu(x)
    assert got.grad_fn is not None and type(got.grad_fn).__name__ == "_GeluBackward"
    (grad,) = torch.autograd.grad(got, x, gy)
    tol = {"rtol": 1e-13, "atol": 1e-14} if dtype == torch.float64 else {"rtol": 1e-6, "atol": 1e-6}
    torch.testing.assert_close(got, want, **tol)
    torch.testing.assert_close(grad, want_grad, **tol)
    xd = torch.randn(37, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fused.gelu, (xd,))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("rows", "features"), [(23, 19), (101, 6), (50, 5)])
def test_the_encoder_kernel_against_finite_differences_and_torch(bias, rows, features):
    # GELU(x W^T + b) in one kernel, with x requiring grad as in a rollout's features (its
    # gradient goes through W in torch). The forward takes blocks of six rows and a tail; the
    # backward panels of 48 rows (23: one short panel; 101: two and a tail of five) and the
    # weight's features in tiles of four (19: four and a tile of three; 6: one and two; 5: one and one).
    torch.manual_seed(4)
    linear = torch.nn.Linear(features, 32, bias=bias).double()
    x = torch.randn(rows, features, dtype=torch.float64, requires_grad=True)
    out = fused.encoder(x, linear)
    assert type(out.grad_fn).__name__ == "_EncoderBackward"
    params = tuple(linear.parameters())
    assert torch.autograd.gradcheck(
        lambda v, *p: fused._Encoder.apply(v, p[0], p[1] if bias else None), (x, *params), eps=1e-6, atol=1e-8
    )
    gy = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, *params), gy)
    with fused.eager():
        want_out = fused.encoder(x, linear)
        want = torch.autograd.grad(want_out, (x, *params), gy)
    torch.testing.assert_close(out, want_out, rtol=1e-12, atol=1e-13)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_head_kernel_against_finite_differences_and_torch(dtype):
    # head(h) + skip(x) in one kernel each way, with x requiring grad as in a rollout's features;
    # 23 rows: five blocks of four side by side and a tail of three.
    torch.manual_seed(6)
    head, skip = torch.nn.Linear(32, 1).to(dtype), torch.nn.Linear(19, 1, bias=False).to(dtype)
    h = torch.randn(23, 32, dtype=dtype, requires_grad=True)
    x = torch.randn(23, 19, dtype=dtype, requires_grad=True)
    out = fused.head(h, x, head, skip)
    assert type(out.grad_fn).__name__ == "_HeadBackward" and out.shape == (23,)
    inputs = (h, x, head.weight, head.bias, skip.weight)
    if dtype == torch.float64:
        assert torch.autograd.gradcheck(fused._Head.apply, inputs, eps=1e-6, atol=1e-8)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, inputs, g)
    with fused.eager():
        want_out = fused.head(h, x, head, skip)
        assert want_out.grad_fn is not None and type(want_out.grad_fn).__name__ != "_HeadBackward"
        want = torch.autograd.grad(want_out, inputs, g)
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(out, want_out, **tol)
    for a, b, name in zip(got, want, ("h", "x", "weight", "bias", "skip"), strict=True):
        torch.testing.assert_close(a, b, **tol, msg=lambda m, name=name: f"{name}: {m}")
    # a skip with a bias is not this kernel's: torch's own, the same values
    skip_b = torch.nn.Linear(19, 1).to(dtype)
    assert type(fused.head(h, x, head, skip_b).grad_fn).__name__ != "_HeadBackward"
    torch.testing.assert_close(fused.head(h, x, head, skip_b), (head(h) + skip_b(x)).squeeze(-1))
