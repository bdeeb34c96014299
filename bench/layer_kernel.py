"""One fused layer's forward and backward on their own (prints figures; not a test).

    .venv/bin/python bench/layer_kernel.py [--rows 10000] [--hidden 64] [--reps 200] [--threads 1]

The real trainer.fused.FusedLayer (csrc/fused_layer.cpp) on SpacingGNN's default block: a
GraphConv layer (sum over the causal prime offsets 2..13 of trainer.graph.neighbour_table), its
LayerNorm, GELU and the residual, in float32 with torch on --threads threads (the kernel takes
them, each a fixed range of rows). Prints the min and the median over --reps calls of the forward
and of the backward (every gradient wanted); on one thread each also as a fraction of the core's
FMA limit (bench/fma_peak.cpp) for its products alone: 2 (forward) and 4 (backward) products of
rows x hidden x hidden multiply-adds. The one-layer table of docs/speed.md comes from this kernel;
its parts were measured by knocking each out in a copy of the source.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

# isort: off
import trainer  # noqa: F401  # before torch, as in a trial: the OpenMP wait it sets (trainer/__init__.py)

# isort: on
import numpy as np
import torch

PRIMES = [2, 3, 5, 7, 11, 13]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if args.rows < 1 or args.reps < 1 or args.threads < 1:
        print("layer_kernel.py: --rows, --reps and --threads must be at least 1", file=sys.stderr)
        return 2

    from train import fma_peak_flops
    from trainer.model import Neighbours

    from trainer import fused, graph

    torch.set_num_threads(args.threads)  # the kernel takes torch's threads
    if fused.library() is None:
        print("layer_kernel.py: the CPU kernels did not build here (see the line above)", file=sys.stderr)
        return 2
    rows, hidden = args.rows, args.hidden
    nb = Neighbours.from_table(graph.neighbour_table(np.arange(1, rows + 1), PRIMES), mean=False)
    gen = torch.Generator().manual_seed(0)

    def param(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).requires_grad_()

    h = param(rows, hidden)
    w_rel, w_root, b_rel = param(hidden, hidden, scale=0.1), param(hidden, hidden, scale=0.1), param(hidden)
    gamma, beta = torch.ones(hidden, requires_grad=True), torch.zeros(hidden, requires_grad=True)
    gy = torch.randn(rows, hidden, generator=gen)
    inputs = (h, w_rel, b_rel, w_root, gamma, beta)

    forward, backward = [], []
    for _ in range(args.reps):
        for t in inputs:
            t.grad = None
        t0 = time.perf_counter()
        y = fused.FusedLayer.apply(h, w_rel, b_rel, w_root, gamma, beta, nb, 1e-5, True, True, None)
        t1 = time.perf_counter()
        y.backward(gy)
        t2 = time.perf_counter()
        forward.append(t1 - t0)
        backward.append(t2 - t1)

    peak = fma_peak_flops()
    product = 2 * rows * hidden * hidden  # FLOPs of one [rows, hidden] x [hidden, hidden] product
    print(
        f"one fused layer: {rows:,} rows, hidden {hidden}, K = {len(PRIMES)}, {args.reps} calls each, "
        f"{args.threads} thread{'s' if args.threads > 1 else ''}"
    )
    for name, times, products in (("forward", forward, 2), ("backward", backward, 4)):
        best, median = min(times), statistics.median(times)
        of_peak = f", products at {products * product / best / peak:.0%} of the FMA limit" if peak else ""
        of_peak = of_peak if args.threads == 1 else ""  # one core's limit
        print(f"{name:>9}: min {best * 1e3:.3f} ms, median {median * 1e3:.3f} ms{of_peak}")
    if peak:
        print(f"the core's FMA limit (bench/fma_peak.cpp): {peak / 1e9:.1f} GFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
