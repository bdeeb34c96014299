"""The three baselines (H = 100) on random windows in n in [1e5, 2e6] of the whole Odlyzko table,
beside MATH.md §5's figures. Prints figures; not a test.

Usage: python bench/baselines.py [--windows 200] [--ar-fit-len 20000] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from trainer.baselines import fit_explicit_scale, summarise, window_baselines
from trainer.data.odlyzko import load_table
from trainer.unfolding import fluctuations, unfold

MATH_MD = {"baseline_index": 0.111, "baseline_ar": 0.066, "baseline_explicit": 0.014}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument(
        "--ar-fit-len", type=int, default=20_000, help="deltas before each window the AR fits on"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    t0 = time.time()
    gamma = load_table()
    delta = fluctuations(unfold(gamma), 1)
    index = np.arange(1, gamma.size + 1)
    print(f"{gamma.size:,} zeros loaded and unfolded in {time.time() - t0:.1f} s")

    fit = slice(10_000 - 1, 100_000 - 1)  # zeros 1e4 .. 1e5-1: a training range below every window
    a = fit_explicit_scale(index[fit], delta[fit])
    rng = np.random.default_rng(args.seed)
    starts = np.sort(rng.choice(np.arange(100_000, gamma.size - 100), args.windows, replace=False))
    t0 = time.time()
    per_window = window_baselines(
        delta, index, starts, 100, explicit_a=a, ar_m=50, ar_fit_len=args.ar_fit_len
    )
    print(
        f"a = {a:.4f} (fitted on n in [1e4, 1e5)); {args.windows} windows, H = 100, AR m = 50 refitted on "
        f"the {args.ar_fit_len:,} deltas before each window; {time.time() - t0:.1f} s"
    )
    for name, reference in MATH_MD.items():
        mean, stderr = summarise(per_window[name])
        print(f"{name:18s} {mean:.4f} ± {stderr:.4f}   (MATH.md §5: {reference})")


if __name__ == "__main__":
    main()
