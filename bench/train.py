"""Training throughput and memory of one trial's step function (prints figures; not a test).

    .venv/bin/python bench/train.py                      # everything (long on a small CPU)
    .venv/bin/python bench/train.py --only fullbatch --sizes 10000 100000
    .venv/bin/python bench/train.py --only minibatch --sizes 100000 1000000 10000000
    .venv/bin/python bench/train.py --only partition

* fullbatch: one graph over N real zeros (hidden 64, depth 3, all four losses); build time
  (features + graph from the memmap), seconds per epoch (= one step) and peak RSS.
  N = 2,001,035 is the whole Odlyzko table less the 16 zeros of history the first node needs
  and the last zero (the target of the last node).
* minibatch: Cluster-GCN with contiguous clusters of --cluster-size zeros, q = 4 per step;
  nodes/s over --steps steps whose clusters are drawn across the whole range, and peak RSS.
  Beyond the --data dataset's last zero (e.g. a sharded dataset of 1e7 real zeros made by
  `orchestrator zeros`; by default the table) the zeros are a SYNTHETIC TAIL: x_n = n - 1/2 + delta_m with the real
  fluctuations delta_m recycled (m = n mod 2,001,052), t_n = N̄^{-1}(x_n). It has the real
  statistics and heights but is not zeta zeros: it measures cost, not accuracy.
* partition: contiguous blocks vs METIS (pymetis) on N = 1e6, k = 500.

Each measurement runs in a fresh subprocess, so its peak RSS (ru_maxrss) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TABLE = 2_001_052
WINDOW = 16
FULL_SIZES = [10_000, 100_000, 1_000_000, TABLE - WINDOW - 1]
MINI_SIZES = [100_000, 1_000_000, 10_000_000]


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cfg(data: str, n: int, mode: str, extra: list[str]):
    from trainer.config import TrialConfig, _apply_set

    settings = {
        "data": {"path": data, "train_start": WINDOW + 1, "train_count": n, "window_start": None},
        "model": {"hidden": 64, "depth": 3, "window": WINDOW},
        "loss": {
            "gue_nll_weight": 0.01,
            "gue_mmd_weight": 0.1,
            "rg_penalty_weight": 0.1 if mode == "fullbatch" else 0.0,
        },
        "train": {"mode": mode, "device": "cpu"},
    }
    for item in extra:  # the same key=value overrides as `trainer train --set`
        settings = _apply_set(settings, item, {})
    return TrialConfig.model_validate(settings)


def _setup(cfg, dataset):
    """The pieces of trainer.training.Trial a training step needs (no validation windows)."""
    import torch
    from trainer.features import feature_names, fit_classical, read_unfolded
    from trainer.losses import LossWeights, rg_target
    from trainer.model import SpacingGNN
    from trainer.rmt import default_scales, sample_wigner
    from trainer.training import LossSetup

    d, m, loss = cfg.data, cfg.model, cfg.loss
    start, stop = d.train_start, d.train_start + d.train_count
    b = cfg.baselines
    classical = fit_classical(dataset, start, stop, X=b.prime_cutoff, beta=b.beta, max_samples=b.fit_samples)
    torch.manual_seed(0)
    model = SpacingGNN(
        len(feature_names(m.window, True)),
        hidden=m.hidden,
        depth=m.depth,
        checkpoint_layers=cfg.train.checkpoint_layers,
    )
    weights = LossWeights(
        mse=loss.mse_weight,
        gue_nll=loss.gue_nll_weight,
        gue_mmd=loss.gue_mmd_weight,
        rg_penalty=loss.rg_penalty_weight,
    )
    reference = sample_wigner(8192, torch.Generator().manual_seed(0))
    target, scales = None, None
    if weights.rg_penalty > 0:
        scales = default_scales(d.train_count)
        target = rg_target(torch.from_numpy(np.diff(read_unfolded(dataset, start, stop + 1))), scales).float()
    losses = LossSetup(weights, reference, target, scales, tuple(loss.mmd_bandwidths))
    return classical.smoothed, model, losses


def _batch(model, nodes):
    import torch
    from trainer.training import to_batch

    return to_batch(nodes, model, torch.device("cpu"))


def _step(model, optimizer, losses, batch, generator) -> float:
    total, _ = losses(batch.base + model(batch.x, batch.graph), batch, generator)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    return float(total.detach())


def child_fullbatch(data: str, n: int, steps: int, extra: list[str]) -> dict:
    import torch
    from trainer.data.dataset import open_dataset
    from trainer.features import build_nodes

    cfg = _cfg(data, n, "fullbatch", extra)
    dataset = open_dataset(data)
    smoothed, model, losses = _setup(cfg, dataset)
    t0 = time.perf_counter()
    nodes = build_nodes(
        dataset,
        [(cfg.data.train_start, cfg.data.train_start + n)],
        primes=cfg.model.primes,
        window=WINDOW,
        smoothed=smoothed,
        residual=True,
    )
    batch = _batch(model, nodes)
    build = time.perf_counter() - t0
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    times, totals = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        totals.append(_step(model, optimizer, losses, batch, generator))
        times.append(time.perf_counter() - t0)
    return {
        "n": n,
        "build_s": build,
        "epoch_s": float(np.median(times)),
        "loss": totals[-1],
        "peak_rss": _peak_rss(),
        "threads": torch.get_num_threads(),
    }


def child_minibatch(data: str, n: int, steps: int, cluster_size: int, extra: list[str]) -> dict:
    import torch
    from trainer.data.dataset import open_dataset
    from trainer.features import build_nodes
    from trainer.partition import contiguous

    cfg = _cfg(data, n, "minibatch", extra)
    dataset = open_dataset(data)
    smoothed, model, losses = _setup(cfg, dataset)
    k, q = n // cluster_size, 4
    clusters = contiguous(cfg.data.train_start, cfg.data.train_start + n, k)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    rng = np.random.default_rng(0)
    done, t0 = 0, None
    for i in range(steps + 2):
        if i == 2:  # the first steps warm up allocators and caches
            done, t0 = 0, time.perf_counter()
        chosen = sorted(rng.choice(k, size=q, replace=False))
        runs = [run for c in chosen for run in clusters[c]]
        nodes = build_nodes(
            dataset, runs, primes=cfg.model.primes, window=WINDOW, smoothed=smoothed, residual=True
        )
        _step(model, optimizer, losses, _batch(model, nodes), generator)
        done += len(nodes)
    seconds = time.perf_counter() - t0
    return {
        "n": n,
        "k": k,
        "q": q,
        "nodes_per_s": done / seconds,
        "peak_rss": _peak_rss(),
        "threads": torch.get_num_threads(),
    }


def child_partition(n: int, k: int) -> dict:
    from trainer.partition import contiguous, cut_edges, metis

    primes = [2, 3, 5, 7, 11, 13]
    t0 = time.perf_counter()
    blocks = contiguous(1, n + 1, k)
    t_blocks = time.perf_counter() - t0
    t0 = time.perf_counter()
    parts = metis(1, n + 1, k, primes)
    t_metis = time.perf_counter() - t0
    return {
        "n": n,
        "k": k,
        "contiguous_s": t_blocks,
        "metis_s": t_metis,
        "contiguous_cut": cut_edges(blocks, primes),
        "metis_cut": cut_edges(parts, primes),
        "metis_runs": sum(len(c) for c in parts),
        "peak_rss": _peak_rss(),
    }


def synthetic_dataset(real: str, count: int, out: Path) -> str:
    """The real table followed by a synthetic tail of recycled real fluctuations (see module doc)."""
    from trainer.data.dataset import open_dataset, write_dataset
    from trainer.unfolding import fluctuations, inverse_smooth_count, unfold

    if (out / "manifest.json").exists():
        return str(out)
    ds = open_dataset(real)
    table = ds.ordinates(ds.first_index, ds.last_index + 1)
    delta = fluctuations(unfold(table), ds.first_index)
    zeros = np.empty(count)
    zeros[: ds.count] = table
    chunk = 1 << 20
    for lo in range(ds.count, count, chunk):
        n = np.arange(lo + 1, min(count, lo + chunk) + 1)
        x = n - 0.5 + delta[(n - 1) % ds.count]
        zeros[lo : lo + len(n)] = inverse_smooth_count(x)
    write_dataset(
        out,
        zeros,
        source="synthetic-tail",
        first_index=1,
        abs_accuracy=1.0,
        params={"real": real, "tail": "recycled delta"},
    )
    return str(out)


def _last_index(data: str) -> int:
    from trainer.data.dataset import open_dataset

    return open_dataset(data).last_index


def _run_child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        return {
            "error": proc.stderr.strip().splitlines()[-1]
            if proc.stderr.strip()
            else f"exit {proc.returncode}"
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _gb(b: int) -> str:
    return f"{b / 1e9:.2f} GB"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["fullbatch", "minibatch", "partition"], action="append")
    p.add_argument("--sizes", type=int, nargs="+", help="N values (default: the table's sizes for each part)")
    p.add_argument("--data", default=os.environ.get("ZETA_SWARM_DATA", str(REPO / "data" / "odlyzko")))
    p.add_argument(
        "--steps", type=int, default=2, help="full-batch epochs timed (median) / mini-batch steps x 10"
    )
    p.add_argument("--cluster-size", type=int, default=2500)
    p.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "zeta-swarm-bench"))
    p.add_argument(
        "--set",
        dest="extra",
        action="append",
        default=[],
        help="section.key=VALUE (YAML, as trainer train --set), e.g. train.checkpoint_layers=true",
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        kind, n = args.child[0], int(args.child[1])
        if kind == "fullbatch":
            out = child_fullbatch(args.data, n, args.steps, args.extra)
        elif kind == "minibatch":
            out = child_minibatch(args.data, n, args.steps * 10, args.cluster_size, args.extra)
        else:
            out = child_partition(n, 500)
        print(json.dumps(out))
        return

    parts = args.only or ["fullbatch", "minibatch", "partition"]
    common = [
        "--steps",
        str(args.steps),
        "--cluster-size",
        str(args.cluster_size),
        "--threads",
        str(args.threads),
    ]
    for item in args.extra:
        common += ["--set", item]
    threads = args.threads or "torch default"
    print(
        f"bench/train.py on {os.cpu_count()} CPUs, threads {threads}; data {args.data}; settings {args.extra or 'defaults'}"
    )
    if "fullbatch" in parts:
        print("\nfull-batch (hidden 64, depth 3, all four losses; one step per epoch)")
        print(f"{'N':>10} {'build s':>8} {'epoch s':>8} {'peak RSS':>10}")
        for n in args.sizes or FULL_SIZES:
            r = _run_child(["--child", "fullbatch", str(n), "--data", args.data, *common])
            if "error" in r:
                print(f"{n:>10} failed: {r['error']}")
                continue
            print(f"{n:>10} {r['build_s']:>8.2f} {r['epoch_s']:>8.2f} {_gb(r['peak_rss']):>10}")
    if "minibatch" in parts:
        print(
            f"\nmini-batch (contiguous clusters of {args.cluster_size}, q = 4, rg off; {args.steps * 10} steps across the range)"
        )
        print(f"{'N':>10} {'data':>10} {'nodes/s':>9} {'peak RSS':>10}")
        sizes = args.sizes or MINI_SIZES
        data = args.data
        last = _last_index(args.data)  # a sharded dataset of 1e7 real zeros needs no tail
        if max(sizes) + WINDOW + 1 > last:
            data = synthetic_dataset(
                args.data,
                max(sizes) + WINDOW + 2,
                Path(args.work_dir) / f"synthetic-{max(sizes) + WINDOW + 2}",
            )
        for n in sizes:
            source = "real" if n + WINDOW + 1 <= last else "SYNTHETIC"
            r = _run_child(["--child", "minibatch", str(n), "--data", data, *common])
            if "error" in r:
                print(f"{n:>10} failed: {r['error']}")
                continue
            print(f"{n:>10} {source:>10} {r['nodes_per_s']:>9.0f} {_gb(r['peak_rss']):>10}")
    if "partition" in parts:
        r = _run_child(["--child", "partition", "1000000"])
        print("\npartition of N = 1e6 zeros into k = 500 clusters (primes 2..13)")
        if "error" in r:
            print(f"failed: {r['error']}")
        else:
            print(f"contiguous: {r['contiguous_s'] * 1e3:.2f} ms, {r['contiguous_cut']} edges cut")
            print(
                f"METIS:      {r['metis_s']:.2f} s, {r['metis_cut']} edges cut, {r['metis_runs']} runs of consecutive zeros"
            )


if __name__ == "__main__":
    main()
