"""The CPU kernels (csrc/), called through ctypes: one message-passing layer fused
(fused_layer.cpp, with the model's encoder Linear + GELU and its output head) and their
autograd; the MMD's fast Gauss transform (fgt.cpp, for trainer.losses); the step's graph tables
(neighbours.cpp, for trainer.graph and trainer.model.Neighbours).

On the CPU a layer of SpacingGNN (gather-sum, two linear maps, LayerNorm, GELU, residual) is
bound by memory traffic, not by its FLOPs: eager torch writes and reads back a [rows, hidden]
tensor at every step (docs/speed.md). The kernel runs every step on six rows at a time while
they sit in registers and L1, forward and backward (the weight gradients on panels of 48); the
backward gathers the gradient over the transposed table instead of recomputing the gather-sum.
In a training step the whole model runs through the kernels in turn (DirectModel: no autograd
node per part, its activations in a workspace kept from step to step); elsewhere (evaluation,
the chunked full-batch path, a layer a kernel does not cover) each part is its own autograd
Function.

The sources are compiled once per machine with the host's g++ (-O3 -march=native, ~5 s) into one
library in $XDG_CACHE_HOME/zeta-swarm (~/.cache/zeta-swarm), keyed by the sources, the flags, the
compiler and the CPU; processes that race write their own file and rename it into place. Where
there is no compiler, or ZETA_SWARM_FUSED=0, or inside `eager()`, or a layer the kernel does not
cover (`supported`), everything runs its torch/numpy version: the same function up to float
rounding (tests/trainer/test_fused.py, test_losses.py, test_graph_features.py). The layer and the
encoder run on torch's threads (torch.get_num_threads(): a trial's cpu_threads), each on a fixed
range of rows; the other kernels on one. Sums run in an order fixed by the shapes and the thread
count: deterministic, as a trial's CPU path must be.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

SOURCES = tuple(
    Path(__file__).with_name("csrc") / name for name in ("fused_layer.cpp", "fgt.cpp", "neighbours.cpp")
)
HEADERS = (Path(__file__).with_name("csrc") / "vector_width.h",)  # in the build's key with the sources
FLAGS = (
    "-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-std=c++17", "-pthread", "-shared", "-fPIC",
)  # fmt: skip
WIDTHS = (16, 32, 64, 128)
#: Set to 0 to run the eager torch path (the reference) everywhere.
ENV = "ZETA_SWARM_FUSED"

_lib: ctypes.CDLL | None = None
_tried = False
_eager_depth = 0  # > 0 inside eager()


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zeta-swarm"


def _cpu_key() -> str:
    """What -march=native depends on: the CPU's flags (a shared home across machines must not
    hand one CPU's build to another)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _build(compiler: str, sources=SOURCES, headers=HEADERS) -> Path:
    """The library of `sources` (the headers they include beside them), built once per machine
    into the cache (bench/kernel_ab.py builds another revision's sources here too)."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
    inputs = "\0".join([*(s.read_text() for s in (*sources, *headers)), *FLAGS, version, _cpu_key()])
    key = hashlib.sha256(inputs.encode()).hexdigest()[:16]
    target = _cache_dir() / f"kernels-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".kernels-", suffix=".so")
    os.close(fd)
    try:
        subprocess.run(
            [compiler, *FLAGS, "-o", tmp, *map(str, sources)], capture_output=True, text=True, check=True
        )
        os.replace(tmp, target)  # atomic: a racing process sees no file or a whole one
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def library() -> ctypes.CDLL | None:
    """The compiled kernel, built on first use; None (once said on stderr) where it cannot be."""
    global _lib, _tried
    if _tried:
        return _lib
    _tried = True
    if os.environ.get(ENV, "1") == "0":
        return None
    compiler = os.environ.get("CXX") or shutil.which("g++")
    if compiler is None:
        print(
            "trainer: no g++ on PATH; layers and the MMD run on eager torch (slower, same results)",
            file=sys.stderr,
        )
        return None
    try:
        lib = ctypes.CDLL(str(_build(compiler)))
    except (OSError, subprocess.CalledProcessError) as e:
        detail = e.stderr.strip().splitlines()[-1] if getattr(e, "stderr", None) else str(e)
        print(
            f"trainer: the CPU kernels did not build ({detail}); layers and the MMD run on eager torch",
            file=sys.stderr,
        )
        return None
    p, i64, i32, f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
    lib.zs_layer_forward.argtypes = [i32, i32, i64, i64, i32, *[p] * 8, f64, i32, *[p] * 4, i32]
    lib.zs_layer_backward.argtypes = [i32, i32, i64, i64, i32, *[p] * 6, i32, *[p] * 11, i32]
    lib.zs_layer_restore.argtypes = [i32, i32, i64, i64, *[p] * 3, i32, *[p] * 3, i32]
    lib.zs_gelu_forward.argtypes = [i32, i64, p, p]
    lib.zs_gelu_backward.argtypes = [i32, i64, p, p, p]
    lib.zs_fgt_mmd.argtypes = [i32, p, p, p, p, i32, i32, i32, p, p, p, f64, f64, i64, p, p]
    lib.zs_fgt_mmd_float.argtypes = [i32, p, p, p, p, i32, i32, i32, p, p, p, f64, i64, p, p, p]
    lib.zs_encoder_forward.argtypes = [i32, i32, i64, i32, *[p] * 5, i32]
    lib.zs_encoder_backward.argtypes = [i32, i32, i64, i32, *[p] * 6, i32]
    lib.zs_head_forward.argtypes = [i32, i32, i64, i32, *[p] * 6]
    lib.zs_head_backward.argtypes = [i32, i32, i64, i32, *[p] * 8]
    lib.zs_neighbour_table.argtypes = [i64, p, i32, p, p]
    lib.zs_neighbour_table.restype = None
    lib.zs_neighbours_from_table.argtypes = [i64, i32, p, i32, p, p, p, p]
    lib.zs_neighbours_from_table.restype = ctypes.c_int64
    for f in (
        lib.zs_layer_forward,
        lib.zs_layer_backward,
        lib.zs_layer_restore,
        lib.zs_gelu_forward,
        lib.zs_gelu_backward,
        lib.zs_fgt_mmd,
        lib.zs_fgt_mmd_float,
        lib.zs_encoder_forward,
        lib.zs_encoder_backward,
        lib.zs_head_forward,
        lib.zs_head_backward,
    ):
        f.restype = ctypes.c_int
    _lib = lib
    return lib


def _native() -> ctypes.CDLL | None:
    """The library where a kernel may run: built, and not inside eager()."""
    return None if _eager_depth else library()


@contextlib.contextmanager
def eager():
    """Every kernel off inside (layers and encoder on eager torch, the MMD's transform in torch,
    the graph tables in numpy): the reference the tests compare with, and the path bench/train.py
    counts FLOPs on (FlopCounterMode sees no ctypes call)."""
    global _eager_depth
    _eager_depth += 1
    try:
        yield
    finally:
        _eager_depth -= 1


def _cpu_kernel_takes(t: torch.Tensor) -> bool:
    """What every kernel here needs: torch on the CPU outside eager() and autocast, and float32
    or float64 values."""
    if _eager_depth or torch.is_autocast_enabled("cpu"):
        return False
    return t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """F.gelu(x) (the exact, erf GELU), by the kernel where it runs: torch's gelu_backward is
    ~1 ms per [10000, 64] on one thread, the kernel's a fifth of that."""
    if not _cpu_kernel_takes(x) or library() is None:
        return F.gelu(x)
    return _Gelu.apply(x)


class _Gelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        library().zs_gelu_forward(x.dtype.itemsize * 8, x.numel(), _ptr(x), _ptr(y))
        ctx.save_for_backward(x)
        return y

    @staticmethod
    def backward(ctx, gy):
        (x,) = ctx.saved_tensors
        gy = gy.contiguous().to(x.dtype)
        gx = torch.empty_like(x)
        library().zs_gelu_backward(x.dtype.itemsize * 8, x.numel(), _ptr(x), _ptr(gy), _ptr(gx))
        return gx


def encoder(x: torch.Tensor, linear: torch.nn.Linear) -> torch.Tensor:
    """F.gelu(linear(x)), the model's encoder, by one kernel where it runs: torch's matrix products
    at K = 19 input features run at a third of their speed, and the GELU is a second pass."""
    w = linear.weight
    if not _cpu_kernel_takes(x) or x.dtype != w.dtype or w.shape[0] not in WIDTHS or library() is None:
        return gelu(linear(x))
    return _Encoder.apply(x, w, linear.bias)


class _Encoder(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        x = x.contiguous()
        n, hidden = x.shape[0], weight.shape[0]
        dgelu, h = x.new_empty((n, hidden)), x.new_empty((n, hidden))
        encoder_forward(x, weight, bias, dgelu, h)
        ctx.save_for_backward(x, weight, dgelu)
        ctx.has_bias = bias is not None
        return h

    @staticmethod
    def backward(ctx, gy):
        x, weight, dgelu = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        gy = gy.contiguous().to(x.dtype)
        f, hidden = x.shape[1], weight.shape[0]
        gu = torch.empty_like(dgelu) if need_x else None
        gwt = x.new_zeros((f, hidden)) if need_w else None
        gb = x.new_zeros(hidden) if need_b and ctx.has_bias else None
        encoder_backward(x, dgelu, gy, gu, gwt, gb)
        gx = gu @ weight.detach().to(gu.dtype) if need_x else None
        return gx, (gwt.t().to(weight.dtype) if need_w else None), gb


def encoder_forward(x, weight, bias, dgelu, h) -> None:
    """The encoder kernel: h = GELU(x weight^T + bias) and dgelu = GELU'(.) of x [n, F]
    (contiguous), written into h and dgelu [n, hidden]."""
    (n, f), hidden = x.shape, weight.shape[0]
    wt = weight.detach().t().contiguous()
    b = None if bias is None else bias.detach().contiguous()
    err = library().zs_encoder_forward(
        x.dtype.itemsize * 8, hidden, n, f, _ptr(x), _ptr(wt), _ptr(b), _ptr(dgelu), _ptr(h), torch.get_num_threads()
    )  # fmt: skip
    _check(err, "fused encoder", hidden, x.dtype)


def encoder_backward(x, dgelu, gy, gu, gwt, gb) -> None:
    """The encoder's backward kernel from gy [n, hidden] (contiguous): gu = gy GELU' written where
    given, the gradients of weight^T [F, hidden] and bias added into gwt and gb where given."""
    (n, f), hidden = x.shape, dgelu.shape[1]
    err = library().zs_encoder_backward(
        x.dtype.itemsize * 8, hidden, n, f, _ptr(x), _ptr(dgelu), _ptr(gy), _ptr(gu), _ptr(gwt), _ptr(gb),
        torch.get_num_threads(),
    )  # fmt: skip
    _check(err, "fused encoder", hidden, x.dtype)


def head(h: torch.Tensor, x: torch.Tensor, linear: torch.nn.Linear, skip: torch.nn.Linear) -> torch.Tensor:
    """(linear(h) + skip(x)).squeeze(-1), SpacingGNN's output from its last layer's rows h [n, H]
    and the nodes' features x [n, F] (linear: its head, with a bias; skip without), by one kernel
    each way where it runs: torch makes it five matrix products of one column (forward and
    backward), each a pass over [n, H] or [n, F]. The same values up to float rounding (the sums'
    order)."""
    w, b, ws = linear.weight, linear.bias, skip.weight
    if (
        not _cpu_kernel_takes(h)
        or not _head_shape_takes(linear, skip)
        or any(t.dtype != h.dtype for t in (x, w, b, ws))
        or h.shape[1] not in WIDTHS
        or library() is None
    ):
        return (linear(h) + skip(x)).squeeze(-1)
    return _Head.apply(h, x, w, b, ws)


def _head_shape_takes(linear: torch.nn.Linear, skip: torch.nn.Linear) -> bool:
    """What the head kernel computes: one output, the head with a bias and the skip without."""
    return (
        linear.bias is not None and skip.bias is None and linear.weight.shape[0] == 1 == skip.weight.shape[0]
    )


class _Head(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, x, w, b, ws):
        h, x = h.contiguous(), x.contiguous()
        out = h.new_empty(h.shape[0])
        head_forward(h, x, w, b, ws, out)
        ctx.save_for_backward(h, x, w, ws)
        return out

    @staticmethod
    def backward(ctx, g):
        h, x, w, ws = ctx.saved_tensors
        need_h, need_x, need_w, need_b, need_ws = ctx.needs_input_grad
        g = g.contiguous().to(h.dtype)
        gh = torch.empty_like(h) if need_h else None
        gw = h.new_empty(w.shape) if need_w else None
        gb = h.new_empty(1) if need_b else None
        gws = h.new_empty(ws.shape) if need_ws else None
        head_backward(h, x, g, w, gh, gw, gb, gws)
        gx = g[:, None] * ws.detach() if need_x else None
        return gh, gx, gw, gb, gws


def head_forward(h, x, w, b, ws, out) -> None:
    """The head kernel: out [n] = h [n, H] w^T + b + x [n, F] ws^T (h and x contiguous)."""
    (n, hidden), f = h.shape, x.shape[1]
    w_, b_, ws_ = (t.detach().contiguous() for t in (w, b, ws))
    err = library().zs_head_forward(
        h.dtype.itemsize * 8, hidden, n, f, _ptr(h), _ptr(x), _ptr(w_), _ptr(b_), _ptr(ws_), _ptr(out)
    )
    _check(err, "fused head", hidden, h.dtype)


def head_backward(h, x, g, w, gh, gw, gb, gws) -> None:
    """The head's backward kernel from g [n] (contiguous): gh = g w written where given, the
    gradients of w, b and ws written (not added) into gw, gb and gws where given."""
    (n, hidden), f = h.shape, x.shape[1]
    w_ = w.detach().contiguous()
    err = library().zs_head_backward(
        h.dtype.itemsize * 8, hidden, n, f, _ptr(h), _ptr(x), _ptr(g), _ptr(w_), _ptr(gh), _ptr(gw), _ptr(gb),
        _ptr(gws),
    )  # fmt: skip
    _check(err, "fused head", hidden, h.dtype)


def neighbour_table(index: np.ndarray, primes) -> np.ndarray | None:
    """trainer.graph.neighbour_table by neighbours.cpp (index int64, strictly increasing; primes
    >= 1), or None where the kernels do not run (the caller runs its numpy version)."""
    lib = _native()
    if lib is None or not len(primes) or min(primes) < 1:
        return None
    index = np.ascontiguousarray(index, dtype=np.int64)
    primes = np.asarray(primes, dtype=np.int64)
    table = np.empty((len(index), len(primes)), dtype=np.int64)
    lib.zs_neighbour_table(len(index), index.ctypes.data, len(primes), primes.ctypes.data, table.ctypes.data)
    return table


def neighbours_from_table(table: np.ndarray, mean: bool):
    """(index, weight, index_t, weight_t, reach) of trainer.model.Neighbours.from_table by
    neighbours.cpp (int32 and float32 arrays), or None where the kernels do not run."""
    m, k = table.shape
    lib = _native()
    if lib is None or m >= 2**31:
        return None
    table = np.ascontiguousarray(table, dtype=np.int64)
    index, index_t = np.empty((m, k), dtype=np.int32), np.empty((m, k), dtype=np.int32)
    weight, weight_t = np.empty((m, k), dtype=np.float32), np.empty((m, k), dtype=np.float32)
    reach = lib.zs_neighbours_from_table(
        m, k, table.ctypes.data, int(mean), index.ctypes.data, weight.ctypes.data, index_t.ctypes.data,
        weight_t.ctypes.data,
    )  # fmt: skip
    return index, weight, index_t, weight_t, int(reach)


def fgt_mmd(x, y, x_sizes, y_sizes, constants, width: float, lo: float, boxes: int, grad: bool):
    """trainer.losses._fgt_mmd's transform by fgt.cpp: (the S estimates, each x value's gradient
    or None), float64, from float64 CPU values; None where the kernel does not run (no compiler,
    inside eager(), another device: the caller runs its torch version)."""
    lib = _native()
    if lib is None or x.device.type != "cpu":
        return None
    scale, inv_fact, T, k_max = (c.contiguous() if isinstance(c, torch.Tensor) else c for c in constants)
    x, y = x.contiguous(), y.contiguous()
    xs, ys = torch.tensor(x_sizes, dtype=torch.int64), torch.tensor(y_sizes, dtype=torch.int64)
    value = x.new_empty(len(x_sizes))
    g = torch.empty_like(x) if grad else None
    err = lib.zs_fgt_mmd(
        len(x_sizes), _ptr(x), _ptr(xs), _ptr(y), _ptr(ys), scale.shape[0], scale.shape[1], k_max,
        _ptr(scale), _ptr(inv_fact), _ptr(T), width, lo, boxes, _ptr(value), _ptr(g),
    )  # fmt: skip
    return None if err else (value, g)


def fgt_mmd_float(x, y, x_sizes, y_sizes, constants, width: float, max_boxes: int, weights, grad: bool):
    """fgt_mmd from float32 values, the boxes found by the kernel (fgt.cpp: zs_fgt_mmd_float): (the
    S estimates, each x value's gradient times its segment's weight, or None), float32, as
    trainer.losses' float32 ops on fgt_mmd's results would make them. None where the kernel does
    not run, and where a value is not finite or they span more than max_boxes boxes (the caller
    takes another path)."""
    lib = _native()
    if lib is None or x.device.type != "cpu" or x.dtype != torch.float32 or y.dtype != torch.float32:
        return None
    scale, inv_fact, T, k_max = (c.contiguous() if isinstance(c, torch.Tensor) else c for c in constants)
    x, y, weights = x.contiguous(), y.contiguous(), weights.contiguous()
    count = len(x_sizes)
    xs, ys = (ctypes.c_int64 * count)(*x_sizes), (ctypes.c_int64 * count)(*y_sizes)
    value = x.new_empty(count)
    g = torch.empty_like(x) if grad else None
    err = lib.zs_fgt_mmd_float(
        count, _ptr(x), xs, _ptr(y), ys, scale.shape[0], scale.shape[1], k_max, _ptr(scale), _ptr(inv_fact),
        _ptr(T), width, max_boxes, _ptr(weights), _ptr(value), _ptr(g),
    )  # fmt: skip
    return None if err else (value, g)


def supported(h: torch.Tensor, index: torch.Tensor, norm, dropout: float, training: bool) -> bool:
    """Whether the kernel computes this layer: CPU, float32 or float64 outside autocast, an int32
    table, a covered width, LayerNorm (with weights) or none, and no dropout to draw."""
    if (
        not _cpu_kernel_takes(h)
        or h.shape[1] not in WIDTHS
        or (h.dtype == torch.float64 and h.shape[1] == 16)
    ):
        return False
    if index.dtype != torch.int32 or (training and dropout > 0):
        return False
    if isinstance(norm, torch.nn.LayerNorm):
        ok = (
            norm.elementwise_affine
            and norm.bias is not None
            and tuple(norm.normalized_shape) == (h.shape[1],)
        )
    else:
        ok = isinstance(norm, torch.nn.Identity)
    return ok and library() is not None


def _ptr(t: torch.Tensor | None):
    return None if t is None else t.data_ptr()


class Kept:
    """What a layer's forward keeps of each of the graph's m rows, for the row-chunked path
    (trainer.model._forward_chunked): saved (xhat, or z without a norm) [m, H] and 1/std [m].
    The forward pass writes them chunk by chunk in place of its scratch; the recomputation in
    the backward pass then rebuilds each chunk's output and GELU' from them elementwise
    (FusedLayerKept) instead of again through the gather and the products."""

    def __init__(self, saved: torch.Tensor, rstd: torch.Tensor):
        self.saved, self.rstd = saved, rstd
        self.filled = False  # set once the forward pass has written its rows through the kernel

    def release(self) -> None:
        """Let go of both tensors (their memory holds something else now): unfilled again."""
        self.saved = self.rstd = None
        self.filled = False

    def rows(self, nb) -> tuple[torch.Tensor, torch.Tensor]:
        """The views of nb's own rows (a chunk: graph rows [nb.start, nb.start + len(nb)))."""
        a, b = nb.start, nb.start + len(nb)
        return self.saved[a:b], self.rstd[a:b]


class FusedLayer(torch.autograd.Function):
    """y = GELU(Norm(W_rel agg + b_rel + W_root own)) (+ own): one layer of SpacingGNN._block
    with dropout 0. h: [n_in, H] input rows (a chunk's halo, then the layer's own m rows); nb:
    the layer's Neighbours (m rows); gamma/beta None without a norm. kept: None, or the (saved,
    rstd) rows of a Kept to write instead of scratch of its own."""

    @staticmethod
    def forward(
        ctx, h, w_rel, b_rel, w_root, gamma, beta, nb, eps: float, residual: bool, grad_mode: bool, kept
    ):
        h = h.contiguous()
        m, hidden = len(nb), h.shape[1]
        y = h.new_empty((m, hidden))
        saved, rstd = kept if kept is not None else (h.new_empty((m, hidden)), h.new_empty(m))
        # GELU'(u), kept so that the backward need not evaluate the GELU again; not made when no
        # backward can follow (grad_mode: the caller's torch.is_grad_enabled(); forward runs without).
        dgelu = h.new_empty((m, hidden)) if grad_mode and any(ctx.needs_input_grad) else None
        layer_forward(h, w_rel, b_rel, w_root, gamma, beta, nb, eps, residual, y, saved, rstd, dgelu)
        _keep_for_backward(
            ctx, (h, w_rel, w_root, gamma, beta, saved, rstd, dgelu), nb, residual, b_rel is not None
        )
        return y

    @staticmethod
    def backward(ctx, gy):
        return *_layer_backward(ctx, gy), None, None, None, None, None


class FusedLayerKept(FusedLayer):
    """FusedLayer's output again from what its forward kept (saved, rstd: the rows of a Kept):
    y and GELU'(u) elementwise, the same values up to rounding (an ulp), none of the products;
    the backward is FusedLayer's (its last two inputs are saved and rstd, where FusedLayer's are
    grad_mode and kept)."""

    @staticmethod
    def forward(ctx, h, w_rel, b_rel, w_root, gamma, beta, nb, eps: float, residual: bool, saved, rstd):
        h = h.contiguous()
        m, (n_in, hidden) = len(nb), h.shape
        dt = h.dtype
        y = h.new_empty((m, hidden))
        dgelu = h.new_empty((m, hidden)) if any(ctx.needs_input_grad) else None
        g, be = (None if t is None else t.detach().to(dt).contiguous() for t in (gamma, beta))
        err = library().zs_layer_restore(
            dt.itemsize * 8, hidden, n_in, m, _ptr(h), _ptr(g), _ptr(be), int(residual), _ptr(saved), _ptr(y),
            _ptr(dgelu), torch.get_num_threads(),
        )  # fmt: skip
        _check(err, "fused layer", hidden, dt)
        _keep_for_backward(
            ctx, (h, w_rel, w_root, gamma, beta, saved, rstd, dgelu), nb, residual, b_rel is not None
        )
        return y


def _check(err: int, what: str, hidden: int, dtype) -> None:
    if err:
        raise RuntimeError(f"{what}: no kernel for hidden {hidden} in {dtype}")


def _keep_for_backward(ctx, tensors, nb, residual: bool, has_bias: bool) -> None:
    """What FusedLayer's and FusedLayerKept's forward leave their (shared) backward."""
    ctx.save_for_backward(*tensors)
    ctx.nb, ctx.residual, ctx.has_bias = nb, residual, has_bias


def _layer_backward(ctx, gy):
    """The gradients of h, w_rel, b_rel, w_root, gamma and beta (None where not wanted) of
    FusedLayer or FusedLayerKept, from what their forward saved."""
    h, w_rel, w_root, gamma, beta, saved, rstd, dgelu = ctx.saved_tensors
    need = ctx.needs_input_grad
    dt = h.dtype
    gy = gy.contiguous().to(dt)
    m, (n_in, hidden) = len(ctx.nb), h.shape
    gh = h.new_empty((n_in, hidden)) if need[0] else None
    gz = h.new_empty((m, hidden))  # the kernel's scratch: the gradient of each row's z
    gw_rel = h.new_zeros((hidden, hidden)) if need[1] else None
    gb_rel = h.new_zeros(hidden) if need[2] and ctx.has_bias else None
    gw_root = h.new_zeros((hidden, hidden)) if need[3] else None
    ggamma = h.new_zeros(hidden) if need[4] and gamma is not None else None
    gbeta = h.new_zeros(hidden) if need[5] and beta is not None else None
    grads = (gw_rel, gb_rel, gw_root, ggamma, gbeta)
    layer_backward(h, w_rel, w_root, gamma, ctx.nb, ctx.residual, (saved, rstd, dgelu), gy, gh, gz, grads)
    cast = [
        None if t is None else t.to(p.dtype) for t, p in ((gw_rel, w_rel), (gb_rel, w_rel), (gw_root, w_root))
    ]
    return gh, cast[0], cast[1], cast[2], ggamma, gbeta


def layer_forward(h, w_rel, b_rel, w_root, gamma, beta, nb, eps, residual, y, saved, rstd, dgelu) -> None:
    """The layer kernel over nb's rows of h [n_in, H] (contiguous): y [m, H] written, with saved
    (xhat, or z without a norm) [m, H], rstd [m] and, where given, dgelu [m, H] for the backward."""
    (n_in, hidden), dt = h.shape, h.dtype
    wt_rel = w_rel.detach().t().to(dt).contiguous()
    wt_root = w_root.detach().t().to(dt).contiguous()
    b, g, be = (None if t is None else t.detach().to(dt).contiguous() for t in (b_rel, gamma, beta))
    weight = nb.weight.to(dt).contiguous()
    err = library().zs_layer_forward(
        dt.itemsize * 8, hidden, n_in, len(nb), nb.index.shape[1], _ptr(nb.index), _ptr(weight), _ptr(h),
        _ptr(wt_rel), _ptr(wt_root), _ptr(b), _ptr(g), _ptr(be), eps, int(residual),
        _ptr(y), _ptr(saved), _ptr(rstd), _ptr(dgelu), torch.get_num_threads(),
    )  # fmt: skip
    _check(err, "fused layer", hidden, dt)


def layer_backward(h, w_rel, w_root, gamma, nb, residual: bool, kept, gy, gh, gz, grads) -> None:
    """The layer's backward kernel from gy [m, H] (contiguous) and what layer_forward kept
    (saved, rstd, dgelu): gh [n_in, H] written where given (gz [m, H] is its scratch), the
    gradients of w_rel, b_rel, w_root, gamma and beta added into grads' five tensors (None: not
    wanted; the caller zeroes them)."""
    (n_in, hidden), dt = h.shape, h.dtype
    saved, rstd, dgelu = kept
    gw_rel, gb_rel, gw_root, ggamma, gbeta = grads
    # Named, not inline: a temporary's memory would be freed before the call reads it.
    g, wr, wo = (None if t is None else t.detach().to(dt).contiguous() for t in (gamma, w_rel, w_root))
    weight_t = nb.weight_t.to(dt).contiguous()
    err = library().zs_layer_backward(
        dt.itemsize * 8, hidden, n_in, len(nb), nb.index_t.shape[1], _ptr(nb.index_t), _ptr(weight_t),
        _ptr(h), _ptr(wr), _ptr(wo), _ptr(g), int(residual), _ptr(saved), _ptr(rstd), _ptr(dgelu),
        _ptr(gy), _ptr(gh), _ptr(gz), _ptr(gw_rel), _ptr(gb_rel), _ptr(gw_root), _ptr(ggamma), _ptr(gbeta),
        torch.get_num_threads(),
    )  # fmt: skip
    _check(err, "fused layer", hidden, dt)


class DirectModel:
    """SpacingGNN's forward and backward in a training step through the kernels alone: the
    encoder, each layer and the head called in turn, with no autograd node per part, and their
    activations in a workspace kept from step to step (trainer.model.SpacingGNN.forward takes
    this path wherever every part runs on a kernel).

    The output is a leaf tensor; when the backward reaches it, its gradient hook runs the kernels'
    backward in turn and gives each parameter its gradient as autograd's accumulation would
    (assigned where .grad is None, else added). The kernels and their arguments are those of the
    per-part Functions above, so outputs and gradients are the same bit for bit
    (tests/trainer/test_fused.py). What this path does not do: torch.autograd.grad with respect to
    the parameters (they get .grad, not an edge of the graph) and a second backward through one
    output (retain_graph: a RuntimeError, the workspace has moved on).

    Why (docs/speed.md item 35): a mini-batch step of the default model on one CPU thread is
    0.7-1.2 ms (3-4%) shorter, in pairs. Most of that is the workspace: the step writes ~35 MB of
    activations into the same memory every time, not into what the allocator hands out. The same
    chain of calls into new tensors each step took only ~0.2 ms off.
    """

    def __init__(self, encoder, layers, residual: bool, head, skip, dropout):
        """encoder, head, skip: SpacingGNN's Linear modules; layers: (map of the aggregate, map
        of the own row, norm) of each layer; dropout: its nn.Dropout."""
        self.encoder, self.layers, self.residual, self.head, self.skip = encoder, layers, residual, head, skip
        self.dropout = dropout
        self.params = [*encoder.parameters(), *head.parameters(), *skip.parameters()]
        for rel, own, norm in layers:
            self.params += [*rel.parameters(), *own.parameters(), *norm.parameters()]
        self._spare: dict | None = None  # the workspace, while no step holds it

    def __getstate__(self) -> dict:
        """A copy (AveragedModel's of the model) makes a workspace of its own if it trains."""
        return {**self.__dict__, "_spare": None}

    def takes(self, x: torch.Tensor, nb) -> bool:
        """Whether every part runs on a kernel (the conditions of encoder(), supported() and
        head()) in x's dtype, with x a constant and some parameter to train."""
        if not _cpu_kernel_takes(x) or x.requires_grad or library() is None:
            return False
        if not all(p.dtype == x.dtype for p in self.params) or not any(p.requires_grad for p in self.params):
            return False
        if not _head_shape_takes(self.head, self.skip):
            return False
        probe = x.new_empty((0, self.encoder.weight.shape[0]))
        return all(supported(probe, nb.index, norm, self.dropout.p, True) for _, _, norm in self.layers)

    def _take(self, n: int, hidden: int, depth: int, like: torch.Tensor) -> dict:
        ws, self._spare = self._spare, None
        if (
            ws is None
            or ws["rows"] < n
            or ws["hidden"] != hidden
            or ws["depth"] != depth
            or ws["dtype"] != like.dtype
        ):
            rows = lambda count: [like.new_empty((n, hidden)) for _ in range(count)]  # noqa: E731
            ws = {
                "rows": n, "hidden": hidden, "depth": depth, "dtype": like.dtype,
                "h": rows(depth + 1), "dgelu_encoder": like.new_empty((n, hidden)), "saved": rows(depth),
                "rstd": [like.new_empty(n) for _ in range(depth)], "dgelu": rows(depth), "gz": like.new_empty((n, hidden)),
                "gh": rows(2),
            }  # fmt: skip
        return ws

    def forward(self, x: torch.Tensor, nb) -> torch.Tensor:
        """The model's output [m] for features x [m, F] over nb (all rows its own), where takes()."""
        encoder, layers, residual, head, skip = self.encoder, self.layers, self.residual, self.head, self.skip
        x = x.contiguous()
        n, hidden, depth = x.shape[0], encoder.weight.shape[0], len(layers)
        ws = self._take(n, hidden, depth, x)
        h, saved, rstd, dgelu = ([t[:n] for t in ws[k]] for k in ("h", "saved", "rstd", "dgelu"))
        dgelu_encoder = ws["dgelu_encoder"][:n]
        out = x.new_empty(n)
        with torch.no_grad():
            encoder_forward(x, encoder.weight, encoder.bias, dgelu_encoder, h[0])
            for i, (rel, own, norm) in enumerate(layers):
                gamma, beta, eps = _norm_args(norm)
                layer_forward(
                    h[i], rel.weight, rel.bias, own.weight, gamma, beta, nb, eps, residual, h[i + 1], saved[i], rstd[i],
                    dgelu[i],
                )  # fmt: skip
            head_forward(h[depth], x, head.weight, head.bias, skip.weight, out)
        held = [ws]  # emptied once the backward has run: the workspace is the next step's then

        def backward(g: torch.Tensor) -> None:
            if not held:
                raise RuntimeError(
                    "DirectModel: a second backward through one output (retain_graph) is not supported"
                )
            (ws,) = held
            g = g.contiguous().to(x.dtype)
            gz = ws["gz"][:n]
            gh = [t[:n] for t in ws["gh"]]
            below = _wants_below(encoder, layers)  # below[i]: a parameter under layer i (or the head) trains
            given = []  # (parameter, its gradient of this backward)

            def wanted(p, make):
                if not p.requires_grad:
                    return None
                given.append((p, (t := make(p))))
                return t

            zeros, empty = (lambda p: torch.zeros_like(p)), (lambda p: torch.empty_like(p))
            with torch.no_grad():
                head_backward(
                    h[depth], x, g, head.weight, gh[0] if below[depth] else None, wanted(head.weight, empty),
                    wanted(head.bias, empty), wanted(skip.weight, empty),
                )  # fmt: skip
                cur = 0
                for i in reversed(range(depth)):
                    if not below[i + 1]:
                        break
                    rel, own, norm = layers[i]
                    gamma, beta, _ = _norm_args(norm)
                    grads = (
                        wanted(rel.weight, zeros),
                        None if rel.bias is None else wanted(rel.bias, zeros),
                        wanted(own.weight, zeros),
                        None if gamma is None else wanted(norm.weight, zeros),
                        None if beta is None else wanted(norm.bias, zeros),
                    )
                    gy, gh_in = gh[cur], gh[1 - cur] if below[i] else None
                    kept = (saved[i], rstd[i], dgelu[i])
                    layer_backward(
                        h[i], rel.weight, own.weight, gamma, nb, residual, kept, gy, gh_in, gz, grads
                    )
                    cur = 1 - cur
                if below[0]:
                    gwt = x.new_zeros((x.shape[1], hidden)) if encoder.weight.requires_grad else None
                    gb = None if encoder.bias is None else wanted(encoder.bias, zeros)
                    encoder_backward(x, dgelu_encoder, gh[cur], None, gwt, gb)
                    if gwt is not None:
                        given.append((encoder.weight, gwt.t().contiguous()))
            held.clear()
            self._spare = ws
            for p, t in given:
                if p.grad is None:
                    p.grad = t
                else:
                    p.grad += t

        out.requires_grad_(True)
        out.register_hook(backward)
        return out


def _norm_args(norm) -> tuple:
    """(gamma, beta, eps) of a layer's norm for the kernels: LayerNorm's, or (None, None, 0.0)."""
    if isinstance(norm, torch.nn.LayerNorm):
        return norm.weight, norm.bias, norm.eps
    return None, None, 0.0


def _wants_below(encoder, layers) -> list[bool]:
    """[i]: whether a parameter of the encoder or of layers [0, i) trains (i = 0 ... depth): where
    the backward needs the gradient of layer i's input."""
    out = [encoder.weight.requires_grad or (encoder.bias is not None and encoder.bias.requires_grad)]
    for rel, own, norm in layers:
        out.append(out[-1] or any(p.requires_grad for m in (rel, own, norm) for p in m.parameters()))
    return out
