"""The five baselines (H = 100) on random windows in n in [3e5, 2e6] of the whole Odlyzko table,
beside MATH.md §5 and §5.1's figures. Prints figures; not a test.

Scales are fitted on n in [1e5, 2e5) only (MATH.md §5.1's protocol), below every window.

Usage: python bench/baselines.py [--windows 200] [--ar-fit-len 20000] [--seed 0] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from trainer.baselines import BASELINES, SmoothedPredictor, fit_explicit_scale, summarise, window_baselines
from trainer.data.odlyzko import load_table
from trainer.unfolding import fluctuations, unfold

MATH_MD = {
    "baseline_index": "0.111 (§5 a)",
    "baseline_ar": "0.066 (§5 c2)",
    "baseline_explicit": "0.0138 ± 0.0004 (§5.1 d)",
    "baseline_smoothed": "0.0024 ± 0.0001 (§5.1 f)",
    "baseline_smoothed_ar": "- (new)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument(
        "--ar-fit-len", type=int, default=20_000, help="deltas before each window the AR fits on"
    )
    parser.add_argument(
        "--smoothed-ar-fit-len", type=int, default=400, help="residuals of (f) its AR fits on"
    )
    parser.add_argument("--prime-cutoff", type=int, default=100_000, help="X of the smoothed sum")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    t0 = time.time()
    gamma = load_table()
    delta = fluctuations(unfold(gamma), 1)
    index = np.arange(1, gamma.size + 1)
    print(f"{gamma.size:,} zeros loaded and unfolded in {time.time() - t0:.1f} s")

    fit = slice(100_000 - 1, 200_000 - 1)  # zeros 1e5 .. 2e5-1: a training range below every window
    t0 = time.time()
    a = fit_explicit_scale(index[fit], delta[fit])
    smoothed, _ = SmoothedPredictor.fit(index[fit], delta[fit], X=args.prime_cutoff)
    print(
        f"fitted on n in [1e5, 2e5) in {time.time() - t0:.1f} s: explicit a = {a:.4f}; smoothed X = {smoothed.X}, "
        f"beta = {smoothed.beta}, a0 = {smoothed.a0:.4f}, a1 = {smoothed.a1:.4f}"
    )
    rng = np.random.default_rng(args.seed)
    starts = np.sort(rng.choice(np.arange(300_000, gamma.size - 100), args.windows, replace=False))
    t0 = time.time()
    per_window = window_baselines(
        delta,
        index,
        starts,
        100,
        explicit_a=a,
        ar_m=50,
        ar_fit_len=args.ar_fit_len,
        smoothed=smoothed,
        smoothed_ar_fit_len=args.smoothed_ar_fit_len,
    )
    print(
        f"{args.windows} random windows in [3e5, 2e6], H = 100; AR m = 50 refitted on the {args.ar_fit_len:,} deltas "
        f"before each window, (f)+AR on its {args.smoothed_ar_fit_len} residuals; {time.time() - t0:.1f} s"
    )
    figures = {}
    print(f"{'baseline':22s} {'MSE ± s.e.':>20s}   {'paired vs smoothed':>22s}   MATH.md")
    for name in BASELINES:
        mean, stderr = summarise(per_window[name])
        diff, diff_se = summarise(per_window[name] - per_window["baseline_smoothed"])
        figures[name] = {"mse": mean, "stderr": stderr, "paired_vs_smoothed": diff, "paired_stderr": diff_se}
        paired = f"{diff:+.5f} ± {diff_se:.5f}" if name != "baseline_smoothed" else "-"
        print(f"{name:22s} {mean:10.5f} ± {stderr:.5f}   {paired:>22s}   {MATH_MD[name]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"windows": args.windows, "seed": args.seed, "figures": figures}, f, indent=2)


if __name__ == "__main__":
    main()
