"""CPU cost of an epoch of multi-step rollout training (train.max_horizon) against one-step (not a test).

    .venv/bin/python bench/horizon.py                          # k = 1, 16, 48 on the default profile
    .venv/bin/python bench/horizon.py --horizons 1 2 4 8 --epochs 3

The trial is the real trainer.training.Trial of configs/trainer/minibatch.yaml (Team 2: 50
clusters, 5 per step, 10 steps an epoch) with the overrides of configs/profiles/default.yaml
(8000 training zeros, hidden 32, depth 2, one CPU thread). For each rollout length k, one
untimed epoch builds and caches every cluster's nodes, then --epochs epochs of the real step
body (Trial.loss at horizon k, backward, gradient clipping, AdamW) are timed with
time.process_time (CPU seconds, the figure a loaded machine does not inflate) and wall time.
Evaluation is left out: it does not depend on k.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]


def _overrides() -> list[str]:
    profile = yaml.safe_load((REPO / "configs/profiles/default.yaml").read_text())
    return [f"{k}={v}" for k, v in profile["overrides"].items()] + [
        f"data.path={REPO / profile['data_path']}"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizons", type=int, nargs="+", default=[1, 16, 48])
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per horizon")
    args = parser.parse_args()

    from trainer.config import load_config
    from trainer.data.dataset import open_dataset
    from trainer.training import Trial

    cfg = load_config(REPO / "configs/trainer/minibatch.yaml", _overrides())
    torch.set_num_threads(cfg.train.cpu_threads or torch.get_num_threads())
    trial = Trial(cfg, open_dataset(cfg.data.path), torch.device("cpu"))
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(1)
    optimizer = torch.optim.AdamW(trial.model.parameters(), lr=cfg.optim.lr)

    def epoch(k: int) -> None:
        trial.model.train()  # once an epoch, as trainer.training._loop
        for step in trial.epoch_plan(rng):
            total, _ = trial.loss(trial.model, trial.batch(step), gen, k)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(trial.model.parameters(), cfg.optim.grad_clip)
            optimizer.step()

    print(
        f"{cfg.data.train_count} zeros, {cfg.train.num_clusters} clusters, {cfg.train.clusters_per_step} per step, "
        f"hidden {cfg.model.hidden}, depth {cfg.model.depth}, {torch.get_num_threads()} thread(s)"
    )
    print(f"{'k':>4} {'CPU s/epoch':>12} {'wall s/epoch':>13} {'x k=1 (CPU)':>12}")
    first = None
    for k in args.horizons:
        epoch(k)  # caches every cluster's nodes
        cpu, wall = time.process_time(), time.monotonic()
        for _ in range(args.epochs):
            epoch(k)
        cpu = (time.process_time() - cpu) / args.epochs
        wall = (time.monotonic() - wall) / args.epochs
        first = first or cpu
        print(f"{k:>4} {cpu:>12.3f} {wall:>13.3f} {cpu / first:>12.1f}")


if __name__ == "__main__":
    main()
