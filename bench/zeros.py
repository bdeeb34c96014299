"""Benchmark of the zeros generator (not a test): prints figures, asserts nothing.

  1. zeros/s of `generate_zeros` at n ~ 1e4, 1e5, 1e6 against mpmath.zetazero in the same run
     (ratio printed), with max |error| against the Odlyzko table;
  2. wall time to generate all 2,001,052 zeros of the Odlyzko table, with max |error| against
     it and the number of zeros off by more than 1e-6 (a missed or extra zero shifts indices);
  3. with --device cuda, zeros/s at n ~ 1e7 and 1e8 (no table to compare with there);
  4. with --per-core, only this: zeros per CPU-second of one process with one thread at
     n ~ 1e6, 1e7, 1e8 (CPU time, so a busy shared machine does not dilute it; wall-clock
     zeros/s and the load are printed beside it). configs/zeros.yaml holds these figures for
     `orchestrator zeros --dry-run`'s estimates;
  5. with --check DIR, only this: DIR's zeros against mpmath.zetazero at --samples indices
     beyond the Odlyzko table (each shard's first and last zero, plus evenly spread ones),
     through the dataset reader; prints max |error|.

Run: .venv/bin/python bench/zeros.py [--skip-full] [--device cpu|cuda] [--threads 1] [--per-core] [--check DIR]
Targets (issue 2): whole table <= 2 min on 2 cores (>= 17,000 zeros/s), max |error| <= 1e-8.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from trainer.data.generate import generate_zeros
from trainer.data.odlyzko import TABLE_COUNT, load_table


def _rate(start: int, count: int, *, device: str, threads: int, table: np.ndarray | None) -> dict:
    generate_zeros(start, min(count, 200), device=device, threads=threads)  # warm caches
    began = time.perf_counter()
    zeros, stats = generate_zeros(start, count, device=device, threads=threads)
    seconds = time.perf_counter() - began
    row = {
        "start": start,
        "count": count,
        "seconds": round(seconds, 3),
        "zeros_per_s": round(count / seconds, 1),
        "z_evals_per_zero": round(stats.z_evals / count, 2),
    }
    if table is not None and start + count - 1 <= table.size:
        row["max_abs_error"] = float(np.abs(zeros - table[start - 1 : start - 1 + count]).max())
    return row


def _per_core(count: int) -> list[dict]:
    rows = []
    for start, n in ((1_000_000, count), (10_000_000, count), (100_000_000, max(count // 4, 1000))):
        generate_zeros(start, 200, threads=1)  # warm caches
        load0 = os.getloadavg()[0]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        generate_zeros(start, n, threads=1)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        row = {
            "start": start,
            "count": n,
            "cpu_s": round(cpu, 2),
            "wall_s": round(wall, 2),
            "zeros_per_cpu_s": round(n / cpu, 1),
            "zeros_per_wall_s": round(n / wall, 1),
            "load_avg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
        }
        rows.append(row)
        print(
            f"n ~ {start:>11,}: {row['zeros_per_cpu_s']:>9,.0f} zeros per CPU-second "
            f"({row['zeros_per_wall_s']:,.0f} zeros/s wall, load {load0:.1f} -> {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    return rows


def _check(directory: str, samples: int, dps: int = 25) -> dict:
    import mpmath
    from trainer.data.dataset import open_dataset

    ds = open_dataset(directory)
    lo = max(ds.first_index, TABLE_COUNT + 1)
    if lo > ds.last_index:
        raise SystemExit(f"{directory}: no zeros beyond the table (n > {TABLE_COUNT:,})")
    edges = [n for s in ds.shards for n in (s.first_index, s.last_index) if lo <= n]
    spread = np.linspace(lo, ds.last_index, max(samples - len(edges), 2)).round().astype(np.int64)
    index = np.unique(np.concatenate([edges, spread]))
    mine = ds.take(index)
    mpmath.mp.dps = dps
    began = time.perf_counter()
    errors = []
    for n, value in zip(index, mine, strict=True):
        errors.append(abs(float(mpmath.zetazero(int(n)).imag) - value))
    worst = int(np.argmax(errors))
    row = {
        "dataset": directory,
        "samples": int(index.size),
        "n_range": [int(index[0]), int(index[-1])],
        "max_abs_error": float(errors[worst]),
        "worst_n": int(index[worst]),
        "mpmath_seconds": round(time.perf_counter() - began, 1),
    }
    print(
        f"{directory}: {row['samples']} zeros at n = {row['n_range'][0]:,}..{row['n_range'][1]:,} vs mpmath.zetazero "
        f"(dps {dps}): max |error| {row['max_abs_error']:.2e} at n = {row['worst_n']:,}",
        flush=True,
    )
    return row


def _mpmath_rate(start: int, count: int) -> float:
    import mpmath

    began = time.perf_counter()
    for n in range(start, start + count):
        mpmath.zetazero(n)
    return count / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--count", type=int, default=20_000, help="zeros per rate measurement")
    parser.add_argument("--mpmath-count", type=int, default=3, help="mpmath.zetazero calls per height")
    parser.add_argument("--skip-full", action="store_true", help="skip the whole-table run")
    parser.add_argument(
        "--per-core", action="store_true", help="only zeros per CPU-second at n ~ 1e6, 1e7, 1e8"
    )
    parser.add_argument(
        "--check", metavar="DIR", default=None, help="only: DIR vs mpmath.zetazero beyond the table"
    )
    parser.add_argument("--samples", type=int, default=24, help="indices compared with --check")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    print(f"zeros benchmark: device {args.device}, threads {args.threads}, cpus {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    if args.per_core or args.check:
        if args.check:
            figures = {"check": _check(args.check, args.samples)}
        else:
            figures = {"per_core": _per_core(args.count), "cpus": os.cpu_count()}
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        return
    table = load_table()
    figures: dict = {
        "device": args.device,
        "threads": args.threads,
        "load_avg_1m": os.getloadavg()[0],
        "rates": [],
    }
    for start in (10_000, 100_000, 1_000_000):
        row = _rate(start, args.count, device=args.device, threads=args.threads, table=table)
        row["mpmath_zeros_per_s"] = round(_mpmath_rate(start, args.mpmath_count), 3)
        row["speedup_vs_mpmath"] = round(row["zeros_per_s"] / row["mpmath_zeros_per_s"], 1)
        figures["rates"].append(row)
        print(
            f"n ~ {start:>9,}: {row['zeros_per_s']:>9,.0f} zeros/s ({row['z_evals_per_zero']} Z evals/zero), "
            f"mpmath.zetazero {row['mpmath_zeros_per_s']:.2f} zeros/s, ratio {row['speedup_vs_mpmath']:,.0f}x, "
            f"max |error| vs table {row['max_abs_error']:.2e}",
            flush=True,
        )
    if args.device == "cuda":
        for start in (10_000_000, 100_000_000):
            row = _rate(start, args.count, device=args.device, threads=args.threads, table=None)
            figures["rates"].append(row)
            print(
                f"n ~ {start:>11,}: {row['zeros_per_s']:>9,.0f} zeros/s ({row['z_evals_per_zero']} Z evals/zero)",
                flush=True,
            )
    if not args.skip_full:

        def progress(done: int, total: int, stats) -> None:
            if stats.chunks % 10 == 0 or done == total:
                print(
                    f"  full table: {done:,}/{total:,} in {stats.seconds:.0f} s", file=sys.stderr, flush=True
                )

        began = time.perf_counter()
        zeros, stats = generate_zeros(
            1, TABLE_COUNT, device=args.device, threads=args.threads, progress=progress
        )
        seconds = time.perf_counter() - began
        error = np.abs(zeros - table)
        full = {
            "seconds": round(seconds, 1),
            "zeros_per_s": round(TABLE_COUNT / seconds, 1),
            "max_abs_error": float(error.max()),
            "worst_n": int(error.argmax()) + 1,
            "off_by_more_than_1e-6": int((error > 1e-6).sum()),
            "z_evals_per_zero": round(stats.z_evals / TABLE_COUNT, 2),
            "refined_blocks": stats.refined_blocks,
        }
        figures["full_table"] = full
        print(
            f"all {TABLE_COUNT:,} zeros: {seconds:.1f} s ({full['zeros_per_s']:,.0f} zeros/s), "
            f"max |error| {full['max_abs_error']:.2e} at n = {full['worst_n']:,}, "
            f"zeros off by > 1e-6: {full['off_by_more_than_1e-6']}, load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
