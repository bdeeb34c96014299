"""Where one training step's time goes: cProfile and the torch profiler over real steps of a trial.

    .venv/bin/python bench/profile_step.py --mode minibatch --n 100000 --steps 20
    .venv/bin/python bench/profile_step.py --mode fullbatch --n 100000 --steps 3

Builds the real trainer.training.Trial (hidden 64, depth 3, window 16, six primes; the default
losses of the team's config file) on the Odlyzko zeros and times its own step: batch building,
forward, losses, backward, optimizer, EMA, and one evaluation of the val windows. Prints the
top entries of each profiler; not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def build_trial(mode: str, n: int, extra: list[str]):
    import torch
    from trainer.config import load_config
    from trainer.data.dataset import open_dataset
    from trainer.training import Trial

    clusters = max(1, n // 2000) if mode == "minibatch" else 1
    overrides = [
        f"data.train_count={n}",
        "data.train_start=100001",
        "data.val_count=2000",
        "data.val_windows=4",
        "data.windows=4",
        "data.test_windows=4",
        "model.hidden=64",
        "model.depth=3",
        f"train.num_clusters={clusters}",
        f"train.clusters_per_step={min(clusters, 5)}",
        "train.device=cpu",
        *extra,
    ]
    cfg = load_config(REPO / "configs" / "trainer" / f"{mode}.yaml", overrides)
    torch.set_num_threads(cfg.train.cpu_threads or torch.get_num_threads())
    torch.use_deterministic_algorithms(True)
    return Trial(cfg, open_dataset(cfg.data.path), torch.device("cpu")), cfg


def steps(trial, cfg, count: int):
    """`count` training steps of the real loop body (trainer.training._loop)."""
    import torch
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    model = trial.model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(1)
    nodes = 0
    plan = []
    for _ in range(count):
        if not plan:
            plan = trial.epoch_plan(rng)
        batch = trial.batch(plan.pop(0))
        model.train()
        total, _ = trial.loss(model, batch, gen)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update_parameters(model)
        nodes += len(batch.nodes)
    return nodes, ema


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["minibatch", "fullbatch"], default="minibatch")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--set", action="append", default=[], help="trainer --set overrides")
    args = p.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
    from torch.profiler import ProfilerActivity, profile

    t0 = time.perf_counter()
    trial, cfg = build_trial(args.mode, args.n, [f"train.cpu_threads={args.threads}", *args.set])
    print(
        f"trial built in {time.perf_counter() - t0:.1f} s ({args.mode}, N = {args.n:,}, {args.threads} thread(s))"
    )
    steps(trial, cfg, 2)  # warm-up: allocators, caches, lazy imports

    prof = cProfile.Profile()
    t0, c0 = time.perf_counter(), time.process_time()
    prof.enable()
    nodes, ema = steps(trial, cfg, args.steps)
    prof.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"{args.steps} steps, {nodes:,} nodes: {nodes / wall:,.0f} nodes/s wall, {nodes / cpu:,.0f} nodes/s CPU "
        f"({wall / args.steps * 1e3:.1f} ms/step wall)"
    )
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(args.top)
    print(out.getvalue())
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())

    with profile(activities=[ProfilerActivity.CPU]) as tp:
        steps(trial, cfg, max(1, args.steps // 4))
    print(tp.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))

    t0 = time.perf_counter()
    trial.evaluate(ema.module, ("val",))
    print(f"one evaluation of the val windows: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
