"""Orchestrator benchmarks (figures, not pass/fail):

1. start-up of `orchestrator --help` (a fresh process, median of 5);
2. `orchestrator status` and `status --json` on a run with 1,000 trials (median of 5);
3. local slot utilisation: the share of slot-time spent inside trainer processes during a swarm
   (sum of job run times / (P x wall time from the first start to the last end)), with the fake
   trainer from tests/orchestrator (trials of --trial-s seconds) and the production poll interval.

Usage: .venv/bin/python bench/swarm_overheads.py [--trials 8] [--parallel 2] [--trial-s 10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FAKE = ROOT / "tests" / "orchestrator" / "fake_trainer.py"


def _median_wall(argv: list[str], n: int = 5) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _fake_run(n: int) -> dict:
    now = time.time()
    rng = random.Random(0)
    base = {
        "baseline_index": 0.111,
        "baseline_ar": 0.066,
        "baseline_explicit": 0.014,
        "baseline_smoothed": 0.0128,
        "baseline_smoothed_ar": 0.0125,
    }
    states = ["COMPLETED"] * 8 + ["RUNNING", "STOPPED", "FAILED", "INFEASIBLE"]
    trials = []
    for i in range(n):
        state = rng.choice(states)
        value = rng.uniform(0.012, 0.05) if state == "COMPLETED" else None
        trials.append(
            {
                "id": str(i),
                "state": state,
                "params": {
                    "loss.gue_nll_weight": rng.uniform(1e-3, 1),
                    "loss.gue_mmd_weight": rng.uniform(1e-2, 10),
                },
                "value": value,
                "stderr": 0.001 if value else None,
                "metrics": {
                    **base,
                    **{f"test_{k}": v for k, v in base.items()},
                    "extrapolation_stderr": 0.001,
                    "paired_diff": value - 0.0125 if value else None,
                    "paired_stderr": 0.0004,
                },
                "output_dir": f"/runs/x/trials/{i}",
                "attempts": 1,
                "created": now - 3600,
                "started": now - 3000,
                "ended": None if state == "RUNNING" else now - 100,
                "machine": "g2-standard-8 + 1 x NVIDIA_L4",
                "reason": None,
                "beats_baseline": bool(value and value < 0.014),
            }
        )
    return {
        "study": "phase2-minibatch",
        "phase": 2,
        "team": "minibatch",
        "backend": "local",
        "objective": "extrapolation_error",
        "updated": now,
        "baselines": base,
        "budget": {
            "gpu_hours": 123.4,
            "gpu_hour_cap": 400,
            "cost": 123.4,
            "currency": "USD",
            "machine": "g2-standard-8 + 1 x NVIDIA_L4",
            "price_per_hour": 1.0,
        },
        "trials": trials,
    }


def bench_startup() -> None:
    help_s = _median_wall([str(BIN / "orchestrator"), "--help"])
    print(f"orchestrator --help: {help_s * 1000:.0f} ms (median of 5 fresh processes)")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "trials.json").write_text(json.dumps(_fake_run(1000)))
        text_s = _median_wall([str(BIN / "orchestrator"), "status", "--run-dir", tmp])
        json_s = _median_wall([str(BIN / "orchestrator"), "status", "--run-dir", tmp, "--json"])
    print(
        f"orchestrator status, 1,000 trials: {text_s * 1000:.0f} ms; --json: {json_s * 1000:.0f} ms (median of 5)"
    )


def bench_utilisation(trials: int, parallel: int, trial_s: float) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "orchestrator"))
    from orchestrator.phases import SwarmRun
    from orchestrator.runners.local import LocalRunner
    from orchestrator.settings_loader import load_settings
    from swarm_helpers import NO_EARLY_STOP

    tmp = Path(tempfile.mkdtemp())
    try:
        s = load_settings(2, profile="smoke", run_dir=tmp / "run", max_trials=trials, parallel=parallel)
        env = {"FAKE_EPOCH_S": str(trial_s / 2)}  # the smoke profile runs 2 epochs
        s = s.model_copy(
            update={"backend": s.backend.model_copy(update={"env": env}), "early_stopping": NO_EARLY_STOP}
        )
        t0 = time.time()
        SwarmRun(s, trainer_command=[sys.executable, str(FAKE)], out=lambda line: None).run()
        wall = time.time() - t0
        jobs = LocalRunner(s.run_dir, s.study).jobs()
        busy = sum(j.ended - j.started for j in jobs)
        span = max(j.ended for j in jobs) - min(j.started for j in jobs)
        print(
            f"local slot utilisation: {busy / (parallel * span):.1%} of slot-time inside trainer processes "
            f"({trials} trials of ~{trial_s:g} s, {parallel} slots, poll {s.backend.poll_s:g} s; "
            f"busy {busy:.1f} s over {span:.1f} s x {parallel}; whole command {wall:.1f} s incl. study creation)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--trial-s", type=float, default=10.0)
    args = ap.parse_args()
    os.chdir(ROOT)
    bench_startup()
    bench_utilisation(args.trials, args.parallel, args.trial_s)


if __name__ == "__main__":
    main()
