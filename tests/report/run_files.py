"""Run directories in the contract's format (docs/contracts.md), built with realistic values.

`python tests/report/run_files.py OUT` writes the three fixture directories the tests use under OUT.

Baselines are the figures of MATH.md §5 on one set of windows (index 0.111, causal AR 0.066,
explicit formula 0.0141); "true" spacings come from the exact GUE (Maxwell) sampler, which real
zeros at these heights follow closely at L = 1; block variances saturate near 0.2 as the zeros'
do (MATH.md §4.5) while a model's grow with L.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import yaml

BASELINES = {"baseline_index": 0.1113, "baseline_ar": 0.06598, "baseline_explicit": 0.01412}
DATA_BLOCK_VARIANCE = [0.211, 0.244, 0.224, 0.170, 0.248, 0.211, 0.211, 0.207]
LS = [2, 4, 8, 16, 32, 64, 128, 256]


def _maxwell(rng: np.random.Generator, n: int) -> np.ndarray:
    return math.sqrt(math.pi / 8) * np.linalg.norm(rng.standard_normal((n, 3)), axis=1)


def write_trial(
    out: Path, rng: np.random.Generator, error: float, *, rg: float, mode: str, params: dict, epochs: int = 6
) -> dict:
    """Write config.yaml, metrics.jsonl, final.json and predictions.json; return final.json's content."""
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "data": {
            "path": "data/odlyzko",
            "train_count": 10000,
            "windows": 3,
            "horizon": 100,
            "window_stride": 500,
        },
        "model": {"primes": [2, 3, 5, 7, 11, 13], "explicit_feature": True},
        "optim": {"lr": 5e-4, "scheduler": "cosine"},
        "loss": {
            "mse_weight": 1.0,
            "gue_nll_weight": params.get("loss.gue_nll_weight", 0.01),
            "gue_mmd_weight": params.get("loss.gue_mmd_weight", 0.1),
            "rg_penalty_weight": rg,
        },
        "train": {"mode": mode, "epochs": epochs},
        "seed": params.get("seed", 0),
    }
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    rows, seconds = [], 0.0
    for epoch in range(1, epochs + 1):
        decay = math.exp(-(epoch - epochs) / 2.0)  # the last epoch lands on `error`
        seconds += 4.2
        err = round(error * decay, 6) if epoch < epochs else error
        rows.append(
            {
                "epoch": epoch,
                "train/mse": round(0.02 * decay + 0.001 * rng.random(), 6),
                "train/gue_nll": round(0.9 + 0.1 * decay, 6),
                "train/gue_mmd": round(0.004 * decay, 6),
                "train/rg_penalty": round(0.3 * decay, 6) if rg else 0.0,
                "train/total": round(0.5 + 0.3 * decay, 6),
                "val_loss": round(0.55 + 0.3 * decay, 6),
                "extrapolation_error": err,
                "extrapolation_stderr": round(err * 0.08, 6),
                **BASELINES,
                "skill": round(1 - err / BASELINES["baseline_explicit"], 6),
                "ks_wigner": round(0.05 + 0.1 * decay, 6),
                "lr": 5e-4 * 0.5 * (1 + math.cos(math.pi * epoch / epochs)),
                "seconds": round(seconds, 2),
                "peak_mem_bytes": 310_000_000,
            }
        )
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    last = rows[-1]
    final = {
        "status": "completed",
        "extrapolation_error": last["extrapolation_error"],
        "extrapolation_stderr": last["extrapolation_stderr"],
        **BASELINES,
        "skill": last["skill"],
        "epochs_done": epochs,
        "seconds": last["seconds"],
    }
    (out / "final.json").write_text(json.dumps(final))
    true_s = _maxwell(rng, 1500)
    pred_s = np.clip(1 + 0.6 * (true_s - 1) + 0.1 * rng.standard_normal(true_s.size), 0.01, None)
    windows = []
    for start in (12000, 12500, 13000):
        true_x = start + 0.5 + np.cumsum(_maxwell(rng, 100)) - 1.0
        windows.append(
            {
                "start": start,
                "true_x": true_x.tolist(),
                "pred_x": (true_x + 0.1 * rng.standard_normal(100)).tolist(),
            }
        )
    predictions = {
        "windows": windows,
        "spacings_pred": pred_s.round(6).tolist(),
        "spacings_true": true_s.round(6).tolist(),
        "block_variance": {
            "L": LS,
            "pred": [round(0.15 * (1 + math.log2(L) / (4 if rg else 2)), 4) for L in LS],
            "data": DATA_BLOCK_VARIANCE,
        },
    }
    (out / "predictions.json").write_text(json.dumps(predictions))
    return final


def write_run(
    run_dir: Path,
    errors: list[float],
    *,
    seed: int = 0,
    team: str = "fullbatch",
    phase: object = 2,
    rg: float = 0.1,
    extra_states: bool = True,
    vary_weights: bool = True,
) -> Path:
    """A run directory with one COMPLETED trial per error, plus (extra_states) one INFEASIBLE, FAILED and RUNNING."""
    rng = np.random.default_rng(seed)
    trials = []
    states = ["COMPLETED"] * len(errors) + (["INFEASIBLE", "FAILED", "RUNNING"] if extra_states else [])
    for i, state in enumerate(states):
        tid = str(i)
        out = run_dir / "trials" / tid
        params = (
            {
                "loss.gue_nll_weight": float(10 ** rng.uniform(-3, 0)),
                "loss.gue_mmd_weight": float(10 ** rng.uniform(-2, 1)),
            }
            if vary_weights
            else {"seed": i}
        )
        value = stderr = None
        metrics: dict = {}
        reason = None
        if state == "COMPLETED":
            final = write_trial(out, rng, errors[i], rg=rg, mode=team, params=params)
            value, stderr = final["extrapolation_error"], final["extrapolation_stderr"]
            metrics = {k: v for k, v in final.items() if k not in ("status", "extrapolation_error")}
        elif state == "INFEASIBLE":
            out.mkdir(parents=True)
            reason = "diverged: loss is nan at epoch 3"
            (out / "final.json").write_text(
                json.dumps({"status": "diverged", "epochs_done": 3, "seconds": 12.0, "reason": reason})
            )
        elif state == "FAILED":
            reason = "exit code 1 three times"
        trials.append(
            {
                "id": tid,
                "state": state,
                "params": params,
                "value": value,
                "stderr": stderr,
                "metrics": metrics,
                "output_dir": str(out),
                "attempts": 1,
                "created": 1_790_000_000.0 + i,
                "started": 1_790_000_001.0 + i,
                "ended": None if state == "RUNNING" else 1_790_000_100.0 + i,
                "machine": "local-cpu",
                "reason": reason,
            }
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    snapshot = {
        "study": run_dir.name,
        "phase": phase,
        "team": team,
        "backend": "local",
        "objective": "extrapolation_error",
        "updated": "2026-11-22T01:30:00Z",
        "baselines": BASELINES,
        "trials": trials,
    }
    (run_dir / "trials.json").write_text(json.dumps(snapshot, indent=1))
    (run_dir / "swarm.yaml").write_text(
        yaml.safe_dump({"phase": phase, "team": team, "backend": "local", "profile": "smoke"})
    )
    return run_dir


def write_experiment(
    root: Path, arms: dict[str, tuple[str, str, float, list[float]]], margin_rel: float = 0.1
) -> Path:
    """An experiment dir: arms maps name -> (role, team, rg weight, per-seed errors)."""
    design = {
        "name": "compare",
        "phase": "compare",
        "verdict": {"margin_rel": margin_rel, "level": 0.95},
        "arms": [],
    }
    for k, (name, (role, team, rg, errors)) in enumerate(arms.items()):
        write_run(
            root / name,
            errors,
            seed=100 + k,
            team=team,
            phase="compare",
            rg=rg,
            extra_states=False,
            vary_weights=False,
        )
        design["arms"].append({"name": name, "role": role, "team": team, "run_dir": name})
    (root / "experiment.json").write_text(json.dumps(design, indent=1))
    return root


# Errors of completed trials: none beats 0.01412 (the explicit formula), the best sits at 0.0203.
LOSING = [0.0513, 0.0203, 0.0871, 0.0342, 0.1104]
# Same, with one trial well below the explicit formula.
WINNING = [0.0513, 0.0098, 0.0871, 0.0342, 0.1104]


def write_fixtures(root: Path) -> dict[str, Path]:
    """The fixture directories of tests/report: a losing run, a winning run and an experiment."""
    return {
        "losing": write_run(root / "phase2-fullbatch", LOSING),
        "winning": write_run(root / "phase2-minibatch", WINNING, team="minibatch", seed=1),
        "experiment": write_experiment(
            root / "compare",
            {
                "t1-rg": ("rg", "fullbatch", 0.1, [0.0402, 0.0388, 0.0415, 0.0396]),
                "t1-no-rg": ("no_rg", "fullbatch", 0.0, [0.0611, 0.0589, 0.0634, 0.0602]),
                "t2-minibatch": ("minibatch", "minibatch", 0.0, [0.0701, 0.0688, 0.0725, 0.0694]),
            },
        ),
    }


if __name__ == "__main__":
    import sys

    for name, path in write_fixtures(Path(sys.argv[1])).items():
        print(f"{name}: {path}")
