"""Run directories in the contract's format (docs/contracts.md), built with realistic values.

`python tests/report/run_files.py OUT` writes the three fixture directories the tests use under OUT.

Baselines are the figures of MATH.md §5 and §5.1 (index 0.111, causal AR 0.066, explicit formula
0.0141, the smoothed prime sum 0.00125 and with its AR 0.00121, the best); "true" spacings come
from the exact GUE (Maxwell) sampler, which real zeros at these heights follow closely at L = 1;
block variances saturate near 0.2 as the zeros' do (MATH.md §4.5) while a model's grow with L.

As the trainer does (docs/contracts.md), each trial is scored on three disjoint window sets (val
per epoch; tune and test at the end) and keeps every window's error. A window's difficulty is
shared by the model and every baseline and is the same in every trial and run (the same windows);
each series adds noise of its own on each window (`noise`, relative), the model's drawn from the
trial's generator. Means are exact: a trial's tune error is the given error, its test error
TEST_RATIO times it (a selected model does a little worse on windows nobody tuned on).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import yaml

BASELINES = {
    "baseline_index": 0.1113,
    "baseline_ar": 0.06598,
    "baseline_explicit": 0.01412,
    "baseline_smoothed": 0.00125,
    "baseline_smoothed_ar": 0.00121,
}
BEST = "baseline_smoothed_ar"
WINDOWS = {"val": (4, 20_000), "tune": (6, 21_000), "test": (32, 22_500)}  # count, first start
TEST_RATIO = 1.04
NOISE = 0.05
SPREAD = 0.3  # log-normal spread of the windows' difficulty
DATA_BLOCK_VARIANCE = [0.211, 0.244, 0.224, 0.170, 0.248, 0.211, 0.211, 0.207]
LS = [2, 4, 8, 16, 32, 64, 128, 256]


def _maxwell(rng: np.random.Generator, n: int) -> np.ndarray:
    return math.sqrt(math.pi / 8) * np.linalg.norm(rng.standard_normal((n, 3)), axis=1)


def _exact(x: np.ndarray, mean: float) -> list[float]:
    return (x * (mean / x.mean())).tolist()


def window_set(name: str, rng: np.random.Generator, error: float, noise: float = NOISE) -> dict:
    """`windows[name]` of final.json: the same windows and baselines in every trial; the model's
    errors (mean exactly `error`) with noise from the trial's `rng`."""
    count, first = WINDOWS[name]
    shared = np.random.default_rng(list(name.encode()))
    hard = np.exp(SPREAD * shared.standard_normal(count))
    out: dict = {"start": [first + 200 * i for i in range(count)]}
    for b, mean in BASELINES.items():
        out[b] = _exact(hard * (1 + noise * shared.standard_normal(count)), mean)
    out["model"] = _exact(hard * (1 + noise * rng.standard_normal(count)), error)
    return out


def set_metrics(prefix: str, w: dict) -> dict:
    """The scalar keys of one window set, from its per-window errors (docs/contracts.md)."""
    model, n = np.array(w["model"]), len(w["model"])
    means = {b: float(np.mean(w[b])) for b in BASELINES}
    best = min(means, key=means.__getitem__)
    d = model - np.array(w[best])
    return {
        f"{prefix}extrapolation_error": float(model.mean()),
        f"{prefix}extrapolation_stderr": float(model.std(ddof=1) / math.sqrt(n)),
        **{f"{prefix}{b}": v for b, v in means.items()},
        f"{prefix}best_baseline": best,
        f"{prefix}paired_diff": float(d.mean()),
        f"{prefix}paired_stderr": float(d.std(ddof=1) / math.sqrt(n)),
        f"{prefix}skill": float(1 - model.mean() / means[best]),
    }


def write_trial(
    out: Path,
    rng: np.random.Generator,
    error: float,
    *,
    rg: float,
    mode: str,
    params: dict,
    epochs: int = 6,
    noise: float = NOISE,
) -> dict:
    """Write config.yaml, metrics.jsonl, final.json and predictions.json; return final.json's content."""
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "data": {
            "path": "data/odlyzko",
            "train_count": 10000,
            "val_windows": WINDOWS["val"][0],
            "windows": WINDOWS["tune"][0],
            "test_windows": WINDOWS["test"][0],
            "horizon": 100,
            "window_stride": 500,
        },
        "model": {"primes": [2, 3, 5, 7, 11, 13], "head": "residual"},
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
        err = round(error * decay, 9) if epoch < epochs else error
        rows.append(
            {
                "epoch": epoch,
                "step": epoch,
                "train/mse": round(0.02 * decay + 0.001 * rng.random(), 6),
                "train/gue_nll": round(0.9 + 0.1 * decay, 6),
                "train/gue_mmd": round(0.004 * decay, 6),
                "train/rg_penalty": round(0.3 * decay, 6) if rg else 0.0,
                "train/total": round(0.5 + 0.3 * decay, 6),
                "val_loss": round(0.55 + 0.3 * decay, 6),
                **set_metrics("val_", window_set("val", rng, err, noise)),
                "lr": 5e-4 * 0.5 * (1 + math.cos(math.pi * epoch / epochs)),
                "seconds": round(seconds, 2),
                "peak_mem_bytes": 310_000_000,
            }
        )
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    windows = {
        "val": window_set("val", rng, error, noise),
        "tune": window_set("tune", rng, error, noise),
        "test": window_set("test", rng, error * TEST_RATIO, noise),
    }
    final = {
        "status": "completed",
        "epochs_done": epochs,
        "seconds": rows[-1]["seconds"],
        "val_loss": rows[-1]["val_loss"],
        "ks_wigner": 0.06,
        "nonpositive_spacings": 0,
        **set_metrics("val_", windows["val"]),
        **set_metrics("", windows["tune"]),
        **set_metrics("test_", windows["test"]),
        "windows": windows,
    }
    (out / "final.json").write_text(json.dumps(final))
    true_s = _maxwell(rng, 1500)
    pred_s = np.clip(1 + 0.6 * (true_s - 1) + 0.1 * rng.standard_normal(true_s.size), 0.01, None)

    def predicted(name: str) -> list[dict]:
        out = []
        for start in windows[name]["start"][:3]:  # a few windows keep the fixture small
            true_x = start + 0.5 + np.cumsum(_maxwell(rng, 100)) - 1.0
            out.append(
                {
                    "start": start,
                    "true_x": true_x.tolist(),
                    "pred_x": (true_x + 0.1 * rng.standard_normal(100)).tolist(),
                }
            )
        return out

    k = np.arange(1, 101)
    predictions = {
        "windows": predicted("tune"),
        "test_windows": predicted("test"),
        # Squared error at step k grows about linearly with k; its mean over k is the set's error.
        "horizon_curves": {
            name: {
                "k": k.tolist(),
                **{
                    series: _exact(k.astype(float), float(np.mean(windows[name][series])))
                    for series in ("model", *BASELINES)
                },
            }
            for name in ("tune", "test")
        },
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
    noise: float = NOISE,
    params: list[dict] | None = None,
    championship: dict | None = None,
) -> Path:
    """A run directory with one COMPLETED trial per error, plus (extra_states) one INFEASIBLE, FAILED
    and RUNNING. `params`: each completed trial's params (default: random weights, or the seed);
    `championship`: phase 3's settings in swarm.yaml."""
    rng = np.random.default_rng(seed)
    trials = []
    states = ["COMPLETED"] * len(errors) + (["INFEASIBLE", "FAILED", "RUNNING"] if extra_states else [])
    for i, state in enumerate(states):
        tid = str(i)
        out = run_dir / "trials" / tid
        trial_params = (
            {
                "loss.gue_nll_weight": float(10 ** rng.uniform(-3, 0)),
                "loss.gue_mmd_weight": float(10 ** rng.uniform(-2, 1)),
            }
            if vary_weights
            else {"seed": i}
        )
        if params is not None and i < len(params):
            trial_params = params[i]
        value = stderr = None
        metrics: dict = {}
        reason = None
        if state == "COMPLETED":
            final = write_trial(out, rng, errors[i], rg=rg, mode=team, params=trial_params, noise=noise)
            value, stderr = final["extrapolation_error"], final["extrapolation_stderr"]
            metrics = {  # orchestrator.trial_outputs.final_metrics: numbers of the tune and test sets
                k: v
                for k, v in final.items()
                if isinstance(v, int | float) and not k.startswith("val_") and k != "extrapolation_error"
            }
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
                "params": trial_params,
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
        "baselines": {b: v for b, v in BASELINES.items()},
        "trials": trials,
    }
    (run_dir / "trials.json").write_text(json.dumps(snapshot, indent=1))
    settings = {"phase": phase, "team": team, "backend": "local", "profile": "smoke"}
    if championship is not None:
        settings["championship"] = championship
    (run_dir / "swarm.yaml").write_text(yaml.safe_dump(settings))
    return run_dir


def write_experiment(
    root: Path,
    arms: dict[str, tuple[str, str, float, list[float]]],
    margin_rel: float = 0.1,
    noise: float = NOISE,
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
            noise=noise,
        )
        design["arms"].append({"name": name, "role": role, "team": team, "run_dir": name})
    (root / "experiment.json").write_text(json.dumps(design, indent=1))
    return root


# Tune errors of completed trials: all beat the explicit formula (0.01412), none the best baseline
# (the smoothed prime sum with AR, 0.00121); the best sits at 0.00203.
LOSING = [0.00513, 0.00203, 0.00871, 0.00342, 0.01104]
# Same, with one trial well below the best baseline, on the tune and the test windows.
WINNING = [0.00513, 0.00098, 0.00871, 0.00342, 0.01104]


def write_championship(
    run_dir: Path, configs: dict[str, tuple[dict, list[float]]], level: float = 0.95
) -> Path:
    """A phase-3 run of team minibatch: configs maps a name to (params without seed, tune error per
    seed); seeds are 0, 1, ... in every configuration."""
    errors, params = [], []
    for cfg, per_seed in configs.values():
        for seed, error in enumerate(per_seed):
            errors.append(error)
            params.append({**cfg, "seed": seed})
    return write_run(
        run_dir,
        errors,
        seed=3,
        team="minibatch",
        phase=3,
        rg=0.0,
        extra_states=False,
        params=params,
        championship={"top": 2, "replicas": 3, "control_team": "fullbatch", "mse_only": True, "level": level},
    )


def write_fixtures(root: Path) -> dict[str, Path]:
    """The fixture directories of tests/report: a losing run, a winning run and an experiment."""
    return {
        "losing": write_run(root / "phase2-fullbatch", LOSING),
        "winning": write_run(root / "phase2-minibatch", WINNING, team="minibatch", seed=1),
        "experiment": write_experiment(
            root / "compare",
            {
                "t1-rg": ("rg", "fullbatch", 0.1, [0.00402, 0.00388, 0.00415, 0.00396]),
                "t1-no-rg": ("no_rg", "fullbatch", 0.0, [0.00611, 0.00589, 0.00634, 0.00602]),
                "t2-minibatch": ("minibatch", "minibatch", 0.0, [0.00701, 0.00688, 0.00725, 0.00694]),
            },
        ),
    }


if __name__ == "__main__":
    import sys

    for name, path in write_fixtures(Path(sys.argv[1])).items():
        print(f"{name}: {path}")
