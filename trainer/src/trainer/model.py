"""The prime-offset GNN: a PyTorch Geometric message-passing stack and a linear head.

    h0 = GELU(Linear(features))
    h_{l+1} = h_l + Dropout(GELU(Norm(Conv_l(h_l, graph))))      (without `residual`: no h_l +)
    out = Linear(h_L) + Linear_skip(features)
    s_hat = base + out                                            the predicted next spacing

`base` comes with each node (trainer.features): with the residual head (the default) it is
1 + f_{n+1} - delta_n, the spacing that puts zero n+1 where the strongest classical predictor
(MATH.md §5.1 (f)) puts it, and both linear maps start at zero, so the untrained model *is*
baseline_smoothed and training is judged by how far below it the model gets. With the spacing
head, base = 0 and the head starts at the mean spacing 1. Nothing clamps s_hat: a predicted
spacing <= 0 is counted and reported (trainer.extrapolation), not hidden by a softplus.

GraphConv (sum over in-neighbours) and SAGEConv (mean) aggregate through `Neighbours`: the
neighbour table as a weighted gather-sum (torch's embedding_bag, no per-edge feature tensor),
whose backward is the same gather over the transposed table (no scatter, no atomics, no sparse
transposition), with the convs' own linear maps. GATv2Conv needs per-edge attention and takes an
edge_index. (A sparse CSR adjacency or an edge_index still works for every layer: PyG's path.)

A GraphConv or SAGEConv layer is held as its two linear maps (`_ConvMaps`: PyG's attribute names,
state_dict keys and initial values, drawn in PyG's order), and torch_geometric is imported only
where PyG itself runs (GATv2, an edge_index or CSR graph): a trial starts 0.2-0.4 s sooner (PyG's
import beyond the torch._dynamo that torch.optim loads anyway; docs/speed.md).

On the CPU, a GraphConv/SAGEConv layer with LayerNorm or no norm and no dropout to draw runs as
one fused kernel (trainer.fused): the same function up to float rounding, forward and backward, in
one pass over the rows, on torch's threads (a trial's cpu_threads), each a fixed range of rows. In
a training step where every part runs on a kernel, forward takes trainer.fused.DirectModel: the
same kernels in turn, without an autograd node per part (the parameters get .grad as autograd
would give it; torch.autograd.grad with respect to them is not supported on that path).

Large graphs (more than CHUNKED_ABOVE nodes, or recompute_activations) run in row chunks with
recomputation (`_RowChunks`): each layer's output for CHUNK_ROWS rows needs only the rows
within the table's reach before them, so the forward keeps just the layer outputs between
segments and the backward recomputes each chunk from them. Full-batch over the whole table
then holds two [nodes, hidden] activations instead of ~14.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from trainer import fused, graph

LAYERS = ("graphconv", "sage", "gatv2")
NORMS = ("none", "layer", "batch")
HEADS = ("residual", "spacing")
#: Graphs with more nodes than this train in row chunks with recomputation (module docstring):
#: below it storing the activations is cheaper than computing every layer twice.
CHUNKED_ABOVE = 1 << 17
#: Rows per chunk. With the fused layer kernel (six rows at a time in registers) a chunk's
#: tensors need not fit a cache; larger chunks cost less Python and autograd per row and keep
#: fewer halo rows (docs/speed.md: 32768 against 8192 at the whole table).
CHUNK_ROWS = 1 << 15


class _Buffers:
    """The [nodes, hidden] tensors of the row-chunked path (each segment's output, each input's
    gradient), handed out again step after step while the graph lives (full-batch: the whole
    trial). Fresh ones would cost the same pages again each step: glibc maps every block over
    32 MB anew and unmaps it when freed, and at the whole table the four of a step (2 GB) took
    540k page faults and ~3 s of system time of a ~13 s step (docs/speed.md).

    A kept tensor is handed out only when nothing else holds its memory (the use count of its
    storage: autograd's saved tensors, views and slices all hold it), so a buffer still in use by
    an earlier graph is never written; then a new one is made and kept too. They are therefore at
    most as many as were ever alive at once, which the peak already counts."""

    def __init__(self):
        self._kept: list[torch.Tensor] = []

    def empty(self, shape, like: torch.Tensor) -> torch.Tensor:
        shape = torch.Size(shape)
        for buf in self._kept:
            if buf.shape == shape and buf.dtype == like.dtype and buf.device == like.device and _unused(buf):
                return buf.detach()  # a new tensor on the same memory: autograd's history goes on it
        buf = like.new_empty(shape)
        self._kept.append(buf)
        return buf.detach()


def _unused(buf: torch.Tensor) -> bool:
    """Whether only buf itself holds its storage (the storage object made to ask is the other use)."""
    count = getattr(torch._C, "_storage_Use_Count", None)
    return count is not None and count(buf.untyped_storage()._cdata) == 2


class Neighbours:
    """The causal neighbour table (trainer.graph.neighbour_table) as SpacingGNN aggregates it.

    The aggregate of node i is sum_j weight[i, j] h[index[i, j]] (weights 1 for a sum, 1/degree
    for a mean, 0 where the table has no neighbour, whose index then points at i itself). Its
    transpose (index_t, weight_t: for each source, the nodes it feeds) gives the backward pass
    the same gather form. `reach` is the largest i - index[i, j] over real edges: a chunk of
    rows needs the inputs of at most `reach` rows before it. A chunk (`rows`) aggregates the
    graph's rows [start, start + len).
    """

    def __init__(self, index, weight, index_t, weight_t, reach: int, start: int = 0):
        self.index, self.weight, self.index_t, self.weight_t = index, weight, index_t, weight_t
        self.reach, self.start = reach, start
        self._rows: dict[tuple[int, int, int], Neighbours] = {}  # rows(), kept: one per chunk
        self.buffers = _Buffers()  # the chunked path's [nodes, hidden] tensors, kept across steps

    @classmethod
    def from_table(cls, table: np.ndarray, mean: bool) -> Neighbours:
        m, k = table.shape
        t = torch.from_numpy
        if (native := fused.neighbours_from_table(table, mean)) is not None:  # csrc/neighbours.cpp
            *arrays, reach = native
            return cls(*map(t, arrays), reach)
        valid = table >= 0
        rows = np.arange(m, dtype=np.int64)[:, None]
        weight = valid.astype(np.float32)
        if mean:
            weight /= np.maximum(valid.sum(axis=1, keepdims=True), 1)
        index = np.where(valid, table, rows)
        # The transpose through flat positions (1-D take and put: a third faster than 2-D
        # fancy indexing): edge (target, column) fills slot (source, column), which is unique
        # because n + p_j is one zero.
        edges = np.flatnonzero(valid)
        targets, cols = np.divmod(edges, k)
        sources = table.ravel()[edges]
        slots = sources * k + cols
        index_t = np.repeat(rows, k, axis=1)
        weight_t = np.zeros((m, k), dtype=np.float32)
        index_t.ravel()[slots] = targets
        weight_t.ravel()[slots] = weight.ravel()[edges]
        reach = int((targets - sources).max()) if len(edges) else 0
        dtype = np.int32 if m < 2**31 else np.int64  # half the memory of int64 at 2e6 nodes
        return cls(t(index.astype(dtype)), t(weight), t(index_t.astype(dtype)), t(weight_t), reach)

    def to(self, device) -> Neighbours:
        return Neighbours(
            *(a.to(device) for a in (self.index, self.weight, self.index_t, self.weight_t)),
            self.reach,
            self.start,
        )

    def __len__(self) -> int:
        return self.index.shape[0]

    def rows(self, lo: int, a: int, b: int) -> Neighbours:
        """The aggregation of rows [a, b) from input rows [lo, b), lo <= a - reach (or 0).

        Kept once built: every layer, the recomputation and (full-batch: the graph is one batch
        for the whole trial) every later step ask for the same chunks. The kept chunks cost
        memory: 0.4 GB of peak at the whole table (docs/speed.md).
        """
        key = (lo, a, b)
        if key not in self._rows:
            index_t = self.index_t[lo:b] - a
            inside = (index_t >= 0) & (index_t < b - a)  # sources feed only the chunk's own rows
            self._rows[key] = Neighbours(
                self.index[a:b] - lo,
                self.weight[a:b],
                torch.where(inside, index_t, 0),
                torch.where(inside, self.weight_t[lo:b], 0.0),
                self.reach,
                self.start + a,
            )
        return self._rows[key]


class _NeighbourSum(torch.autograd.Function):
    """out[i] = sum_j w[i, j] x[index[i, j]] over the output rows (len(nb.index)); x may have
    more rows (a chunk's halo before them). Backward: the same gather over the transpose."""

    @staticmethod
    def forward(ctx, x, index, weight, index_t, weight_t):
        ctx.save_for_backward(index_t, weight_t)
        # Detached: embedding_bag looks at requires_grad, not at the grad mode, and would build
        # the bag bookkeeping of its own backward (offset2bag, bag sizes: +60% of its time).
        return F.embedding_bag(index, x.detach(), mode="sum", per_sample_weights=weight.to(x.dtype))

    @staticmethod
    def backward(ctx, grad):
        index_t, weight_t = ctx.saved_tensors
        grad = grad.contiguous()
        return (
            F.embedding_bag(index_t, grad, mode="sum", per_sample_weights=weight_t.to(grad.dtype)),
            None,
            None,
            None,
            None,
        )


#: Under autocast activations arrive in these; the gather-sum runs in float32 (float64 stays).
_HALF = (torch.bfloat16, torch.float16)


def _aggregate(h: torch.Tensor, nb: Neighbours) -> torch.Tensor:
    return _NeighbourSum.apply(h, nb.index, nb.weight, nb.index_t, nb.weight_t)


class _RowChunks(torch.autograd.Function):
    """out = step(inputs..., nb) computed CHUNK_ROWS rows at a time, keeping only the inputs:
    the backward recomputes each chunk (from its rows and the `reach` rows before them, under
    the forward's autocast state) and runs autograd through it, so frozen parameters
    (requires_grad False) get none. With `random` (dropout while training) each chunk's RNG
    state is kept (~5 KB on the CPU) and replayed, so the recomputation draws the forward's
    masks. Row-wise inputs all have the graph's rows; the parameters are passed only so that
    the output requires grad when they do. donor: None, or the fused.Kept the step rebuilds its
    top layer from (each chunk reads its own rows, before that chunk's backward): the first
    input's gradient is written over its saved rows, behind the recomputation, instead of into
    memory of its own; then the Kept is released, so a second backward of the same graph
    (retain_graph) recomputes the layer whole, into memory of its own."""

    @staticmethod
    def forward(ctx, step, nb, random, count, donor, *tensors):
        inputs, params = tensors[:count], tensors[count:]
        m = len(nb)
        out = None
        device = inputs[0].device
        rows = [t.detach() for t in inputs]  # slices of a detached tensor never ask for gradients
        ctx.rng_states = []  # with `random` (dropout): the RNG state each chunk started from
        for lo, a, b in _chunks(m, nb.reach):
            if random:
                ctx.rng_states.append(_rng_state(device))
            o = step(*(t[lo:b] for t in rows), nb.rows(lo, a, b))
            if out is None:
                out = nb.buffers.empty((m, *o.shape[1:]), o)
            out[a:b] = o
        dev = device.type
        ctx.step, ctx.nb, ctx.count, ctx.donor = step, nb, count, donor
        ctx.autocast = (dev, torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev))
        ctx.save_for_backward(*inputs)
        ctx.params = params
        return out

    @staticmethod
    def backward(ctx, grad):
        inputs, params, nb = ctx.saved_tensors, ctx.params, ctx.nb
        need_in = ctx.needs_input_grad[5 : 5 + ctx.count]
        wanted = [p for p in params if p.requires_grad]
        # Not zeroed: every row is some chunk's own and is written there first (_chunk_backward),
        # after the chunk's recomputation and backward, the last to read the donor's rows there.
        donor, ctx.donor = ctx.donor, None
        fits = donor is not None and (donor.saved.shape, donor.saved.dtype) == (
            inputs[0].shape,
            inputs[0].dtype,
        )
        g_in = [
            (donor.saved if k == 0 and fits else nb.buffers.empty(t.shape, t)) if need else None
            for k, (t, need) in enumerate(zip(inputs, need_in, strict=True))
        ]
        dev, enabled, dtype = ctx.autocast
        device = inputs[0].device
        # The recomputation replays each chunk's RNG state (the same dropout masks as its
        # forward); fork_rng puts the generator back where the forward left it afterwards.
        with torch.random.fork_rng(
            devices=[device] if device.type == "cuda" else [], enabled=bool(ctx.rng_states)
        ):
            for k, (lo, a, b) in enumerate(_chunks(len(nb), nb.reach)):
                if ctx.rng_states:
                    _set_rng_state(device, ctx.rng_states[k])
                with torch.enable_grad(), torch.autocast(dev, dtype=dtype, enabled=enabled):
                    sl = [
                        t[lo:b].detach().requires_grad_(need) for t, need in zip(inputs, need_in, strict=True)
                    ]
                    out = ctx.step(*sl, nb.rows(lo, a, b))
                _chunk_backward(out, grad[a:b], sl, wanted, g_in, lo, a, b)
        if donor is not None:
            # Its rows hold the gradient now, which the graph (alive until the caller drops it)
            # must not keep from Neighbours.buffers.
            donor.release()
        return None, None, None, None, None, *g_in, *(None for _ in params)


def _chunk_backward(out, grad, sl, wanted, g_in, lo: int, a: int, b: int) -> None:
    # As torch's reentrant checkpoint: the parameters' .grad accumulate right here, chunk after
    # chunk in a fixed order (autograd.grad would not run under FlopCounterMode).
    leaves = [t for t in sl if t.requires_grad] + wanted
    torch.autograd.backward(out, grad, inputs=leaves)
    for g, t in zip(g_in, sl, strict=True):
        if g is None:
            continue
        # The chunks run in row order: rows [a, b) are this chunk's own and reached here first
        # (set, not added: the input gradients are never zeroed whole); its halo [lo, a) is the
        # earlier chunks' own rows, already set, and gets this chunk's share added.
        if t.grad is None:
            g[a:b] = 0.0
        else:
            g[a:b] = t.grad[a - lo :]
            g[lo:a] += t.grad[: a - lo]


def _rng_state(device: torch.device) -> torch.Tensor:
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _set_rng_state(device: torch.device, state: torch.Tensor) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


def _own_rows(h: torch.Tensor, nb: Neighbours) -> torch.Tensor:
    """The rows of h that nb aggregates into: all of them, or a chunk's rows after its halo."""
    return h if h.shape[0] == len(nb) else h[h.shape[0] - len(nb) :]


def _chunks(m: int, reach: int):
    """(lo, a, b): output rows [a, b) of CHUNK_ROWS and their input rows [lo, b)."""
    for a in range(0, m, CHUNK_ROWS):
        yield max(0, a - reach), a, min(m, a + CHUNK_ROWS)


class _PygLinear(nn.Linear):
    """nn.Linear initialised as torch_geometric.nn.dense.Linear with its default initialisers, by
    its formulas (torch_geometric.nn.inits): weight uniform within sqrt(6 / ((1 + a^2) fan_in)),
    a = sqrt(5); bias uniform within 1 / sqrt(fan_in). The same draws, so the same values bit for
    bit from the same seed (torch's own kaiming_uniform_ computes the bound another way, an ulp
    off)."""

    def reset_parameters(self) -> None:
        a = math.sqrt(5)
        bound = math.sqrt(6 / ((1 + a**2) * self.in_features))
        self.weight.data.uniform_(-bound, bound)
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            self.bias.data.uniform_(-bound, bound)


class _ConvMaps(nn.Module):
    """A GraphConv (sum) or SAGEConv (mean) layer of hidden -> hidden, held as PyG holds it: the
    aggregate's map with bias (lin_rel / lin_l) and the node's own without (lin_root / lin_r),
    made and then reset in PyG's order, so that parameters, state_dict keys and initial values
    are PyG's. SpacingGNN aggregates through Neighbours itself; forward(h, g) is PyG's own conv
    over an edge_index or CSR adjacency, made on first use (torch_geometric imported then, the
    global RNG untouched) with these parameters, not copies of them."""

    def __init__(self, layer: str, hidden: int):
        super().__init__()
        self.layer = layer
        self.rel_name, self.own_name = ("lin_rel", "lin_root") if layer == "graphconv" else ("lin_l", "lin_r")
        setattr(self, self.rel_name, _PygLinear(hidden, hidden, bias=True))
        setattr(self, self.own_name, _PygLinear(hidden, hidden, bias=False))
        for name in (self.rel_name, self.own_name):  # PyG's conv resets both after making them
            getattr(self, name).reset_parameters()

    def maps(self) -> tuple[nn.Linear, nn.Linear]:
        return getattr(self, self.rel_name), getattr(self, self.own_name)

    def forward(self, h: torch.Tensor, g) -> torch.Tensor:
        conv = self.__dict__.get("_pyg")
        if conv is None:
            from torch_geometric.nn import GraphConv, SAGEConv

            hidden = self.maps()[0].in_features
            with torch.random.fork_rng(devices=[]):  # its own initial draws are thrown away
                if self.layer == "graphconv":
                    conv = GraphConv(hidden, hidden, aggr="add")
                else:
                    conv = SAGEConv(hidden, hidden, aggr="mean")
            rel, own = self.maps()
            getattr(conv, self.rel_name).weight, getattr(conv, self.rel_name).bias = rel.weight, rel.bias
            getattr(conv, self.own_name).weight = own.weight
            self.__dict__["_pyg"] = conv  # not a submodule: no second set of parameters
        return conv(h, g)


def _conv(layer: str, hidden: int) -> nn.Module:
    if layer in ("graphconv", "sage"):
        return _ConvMaps(layer, hidden)
    if layer == "gatv2":
        from torch_geometric.nn import GATv2Conv

        return GATv2Conv(hidden, hidden, heads=1)
    raise ValueError(f"unknown layer {layer!r}; expected one of {LAYERS}")


def _norm(norm: str, hidden: int) -> nn.Module:
    if norm == "none":
        return nn.Identity()
    if norm == "layer":
        return nn.LayerNorm(hidden)
    if norm == "batch":
        return nn.BatchNorm1d(hidden)
    raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")


class SpacingGNN(nn.Module):
    """Predicts the next unfolded spacing s_n of every node, as base + output (module docstring).

    Args:
        in_features: node feature columns (trainer.features.feature_names).
        layer: "graphconv", "sage" or "gatv2" (default "graphconv").
        hidden: hidden width (default 64).
        depth: message-passing layers (default 3); the receptive field reaches
            depth * max(primes) zeros back.
        dropout: dropout probability after each layer (default 0).
        residual: add each layer's output to its input (default True).
        norm: "none", "layer" or "batch" normalisation inside each layer (default "layer").
        recompute_activations: run in row chunks with recomputation (module docstring) at any
            size (default False: only above CHUNKED_ABOVE nodes).
        head: "residual" (output 0 at start: the node's base, i.e. baseline (f)) or "spacing"
            (output 1 at start: the mean spacing; base 0).
    """

    def __init__(
        self,
        in_features: int,
        *,
        layer: str = "graphconv",
        hidden: int = 64,
        depth: int = 3,
        dropout: float = 0.0,
        residual: bool = True,
        norm: str = "layer",
        recompute_activations: bool = False,
        head: str = "residual",
    ):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; expected one of {HEADS}")
        self.head_kind = head
        self.layer = layer
        self.residual = residual
        self.recompute_activations = recompute_activations
        self.encoder = nn.Linear(in_features, hidden)
        self.convs = nn.ModuleList(_conv(layer, hidden) for _ in range(depth))
        self.norms = nn.ModuleList(_norm(norm, hidden) for _ in range(depth))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, 1)
        if head == "residual":
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        else:
            nn.init.constant_(self.head.bias, 1.0)
        self.skip = nn.Linear(in_features, 1, bias=False)
        nn.init.zeros_(self.skip.weight)
        self._direct = None  # a training step's path through the kernels alone (forward)
        if layer != "gatv2":
            layers = [(*self._maps(i), self.norms[i]) for i in range(depth)]
            self._direct = fused.DirectModel(
                self.encoder, layers, residual, self.head, self.skip, self.dropout
            )

    def freeze_bottom_layers(self) -> None:
        """Stop the encoder and the bottom half (depth // 2) of the message-passing layers from
        learning: requires_grad False, so they get no gradient and torch's optimizers (weight
        decay included) skip them."""
        bottom = len(self.convs) // 2
        for module in (self.encoder, *self.convs[:bottom], *self.norms[:bottom]):
            module.requires_grad_(False)

    def graph_input(self, table: np.ndarray):
        """The graph argument of forward for a neighbour table: Neighbours, or edge_index for GATv2."""
        if self.layer == "gatv2":
            return graph.edge_index(table)
        return Neighbours.from_table(table, mean=self.layer == "sage")

    def _maps(self, i: int) -> tuple[nn.Linear, nn.Linear]:
        """Layer i's linear maps of the aggregate (with bias) and of the node's own row (none)."""
        return self.convs[i].maps()

    def _conv(self, i: int, h: torch.Tensor, g) -> torch.Tensor:
        conv = self.convs[i]
        if not isinstance(g, Neighbours):  # PyG's own path: edge_index or CSR adjacency
            # Under bf16 autocast h arrives in bf16, but sparse CSR matmul is not an autocast op and
            # wants matching dtypes: aggregate in float32 (the conv's linear layers still autocast).
            return conv(h.float() if g.layout == torch.sparse_csr else h, g)
        agg = _aggregate(h.float() if h.dtype in _HALF else h, g)
        root = _own_rows(h, g)
        rel, own = self._maps(i)
        # rel(agg) + own(root), the second map accumulated into the first's output in place (own
        # has no bias in either conv, and a linear map's backward needs none of its output): no
        # [rows, hidden] sum, nor the copy an out-of-place addmm makes of its input. In-place ops
        # are not autocast, so the operands take the output's dtype themselves.
        out = rel(agg)
        return out.addmm_(root.to(out.dtype), own.weight.t().to(out.dtype))

    def _block(self, i: int, h: torch.Tensor, g, kept: fused.Kept | None = None) -> torch.Tensor:
        """Layer i over the rows of g. kept (the chunked path's top layer): the fused layer's
        forward pass writes it, and its recomputation with gradients rebuilds from it."""
        norm = self.norms[i]
        if isinstance(g, Neighbours) and fused.supported(h, g.index, norm, self.dropout.p, self.training):
            rel, own = self._maps(i)
            affine = isinstance(norm, nn.LayerNorm)
            args = (
                h, rel.weight, rel.bias, own.weight, norm.weight if affine else None, norm.bias if affine else None,
                g, norm.eps if affine else 0.0, self.residual,
            )  # fmt: skip
            grad = torch.is_grad_enabled()
            if kept is not None and kept.filled and grad:
                return fused.FusedLayerKept.apply(*args, *kept.rows(g))
            if kept is not None and not grad:
                kept.filled = True
                return fused.FusedLayer.apply(*args, grad, kept.rows(g))
            return fused.FusedLayer.apply(*args, grad, None)
        z = self.dropout(nn.functional.gelu(self.norms[i](self._conv(i, h, g))))
        root = _own_rows(h, g) if isinstance(g, Neighbours) else h
        # In place: z is a new tensor whose backward needs none of its values (GELU's and
        # dropout's keep their input and mask), so the residual sum needs no tensor of its own.
        return z.add_(root) if self.residual else z

    def _chunked(self, m: int) -> bool:
        """Whether forward runs in row chunks with recomputation (module docstring)."""
        if self.layer == "gatv2" or isinstance(self.norms[0], nn.BatchNorm1d):
            return False  # per-edge attention; batch statistics over all rows
        return self.recompute_activations or m > CHUNKED_ABOVE

    def forward(self, x: torch.Tensor, g) -> torch.Tensor:
        """The output [m] for node features x [m, F] and graph g (from graph_input): the
        predicted spacing is the nodes' base plus this."""
        if isinstance(g, Neighbours) and self._chunked(x.shape[0]):
            return self._forward_chunked(x, g)
        direct = self._direct  # a training step, every part on a kernel: no autograd node per part
        if direct is not None and self.training and torch.is_grad_enabled() and isinstance(g, Neighbours):
            if direct.takes(x, g):
                return direct.forward(x, g)
        h = fused.encoder(x, self.encoder)
        for i in range(len(self.convs)):
            h = self._block(i, h, g)
        return fused.head(h, x, self.head, self.skip)

    def _forward_chunked(self, x: torch.Tensor, g: Neighbours) -> torch.Tensor:
        """forward in segments x -> h_1 -> ... -> h_{depth-1} -> output, each a _RowChunks: the
        encoder rides with the first layer and the head with the last, so only depth - 1
        activations of [m, hidden] are kept. With the fused kernel the top layer's forward pass
        also keeps its xhat (fused.Kept), so that its recomputation is elementwise, without the
        layer's products; the top segment's input gradient is then written over that xhat, row
        by row behind the recomputation (_RowChunks' donor), so the step holds no more [m,
        hidden] tensors than without it (docs/speed.md)."""
        depth = len(self.convs)
        hidden = self.head.in_features
        top = self.norms[depth - 1]
        kept = None  # the top layer's
        if torch.is_grad_enabled() and fused.supported(
            x.new_empty((0, hidden)), g.index, top, self.dropout.p, self.training
        ):
            kept = fused.Kept(g.buffers.empty((len(g), hidden), x), g.buffers.empty((len(g),), x))

        def segment(i: int, kept: fused.Kept | None):
            # kept is an argument, not a name of the enclosing function: only the top segment's
            # step holds it.
            def step(*args):
                *rows, nb = args
                h = rows[0]
                if i == 0:
                    h = fused.encoder(h, self.encoder)
                h = self._block(i, h, nb, kept)
                if i == depth - 1:
                    h = fused.head(h, _own_rows(rows[-1], nb), self.head, self.skip)
                return h

            params = [p for p in self.convs[i].parameters()] + [p for p in self.norms[i].parameters()]
            if i == 0:
                params += list(self.encoder.parameters())
            if i == depth - 1:
                params += list(self.head.parameters()) + list(self.skip.parameters())
            return step, params

        random = self.training and self.dropout.p > 0  # each chunk's masks replayed in backward
        h = x
        for i in range(depth):
            layer_kept = kept if i == depth - 1 else None  # the top segment's alone
            step, params = segment(i, layer_kept)
            inputs = [h, x] if i == depth - 1 and i > 0 else [h]
            h = _RowChunks.apply(step, g, random, len(inputs), layer_kept, *inputs, *params)
        return h
