"""A stand-in for `trainer train` for controller and runner tests: a real subprocess, stdlib only,
that writes config.yaml, metrics.jsonl and final.json per docs/contracts.md and resumes from its
own checkpoint. The objective is a smooth function of the loss weights with its minimum at
gue_nll_weight = 10**-1.5, gue_mmd_weight = 1, the shortest prime set and lr = 5e-4, so a tuner
(and each phase-1 round) has something to find.

As the trainer does, it scores three disjoint window sets (val per epoch, tune and test at the
end) with the five baselines, and keeps every window's error. A window's difficulty is shared by
the model and the baselines (so pairing matters), the baselines' errors are the same in every
trial, and the model's carry a little noise of its own that depends on the seed.

Usage: fake_trainer.py train --config FILE [--set key=value ...] --output-dir DIR

Knobs (environment):
  FAKE_TRAINER_LOG      append "<job id> <output_dir> <pid>" here on every start (counts spawns)
  FAKE_EPOCH_S          seconds per epoch (default 0.01)
  FAKE_FAIL_TRIALS      trial ids (output dir names) whose first FAKE_FAIL_TIMES starts exit 1
  FAKE_FAIL_TIMES       default 1
  FAKE_DIVERGE_TRIALS   trial ids that end with status "diverged"
  FAKE_HANG_TRIALS      trial ids that run until killed
  FAKE_GATE_FAIL        `key=value[,key=value]`: trials whose --set keys all match fail the gates
                        (spacing_ks 0.3, nonpositive_fraction 0.05); every other trial passes them
The playbook's knobs (optim.warmup_steps, optim.ema_decay, model.hidden/depth/layer,
train.max_horizon, train.freeze_bottom_layers_on_expand, train.height_temperature) add terms to
the objective when set (`playbook_terms`): best at warmup 10, EMA 0.97, width 64, depth 3, gatv2,
max_horizon 32 without freezing, temperature 0.7. final.json carries `gates` and `cost`.
A `--set fake.behaviour=succeed|fail|hang|stubborn` overrides the lists for that run (stubborn:
hangs and ignores SIGTERM).
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import statistics
import sys
import time

# Mean error of each baseline (smoothed_ar is the best; explicit is not).
BASELINES = {
    "baseline_index": 0.111,
    "baseline_ar": 0.066,
    "baseline_explicit": 0.014,
    "baseline_smoothed": 0.0128,
    "baseline_smoothed_ar": 0.0125,
}
WINDOW_SPREAD = 0.3  # log-normal spread of a window's difficulty, shared by model and baselines
OWN_NOISE = 0.05  # relative noise of each series on each window (the model's depends on the seed)


def _parse(argv):
    sets, out, config = {}, None, None
    i = 1
    while i < len(argv):
        if argv[i] == "--set":
            key, _, value = argv[i + 1].partition("=")
            sets[key] = value
            i += 2
        elif argv[i] == "--output-dir":
            out = argv[i + 1]
            i += 2
        elif argv[i] == "--config":
            config = argv[i + 1]
            i += 2
        else:
            i += 1
    return sets, out, config


def _ids(name):
    return {x for x in os.environ.get(name, "").split(",") if x}


def _write(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def objective(nll: float, mmd: float, primes: list, lr: float) -> float:
    """Smallest at nll = 10**-1.5, mmd = 1, the shortest prime set and lr = 5e-4; a weight of 0 (phase
    3's MSE-only arm) scores as 1e-4."""
    nll, mmd = max(nll, 1e-4), max(mmd, 1e-4)
    return (
        0.010
        + 0.004 * (math.log10(nll) + 1.5) ** 2
        + 0.003 * math.log10(mmd) ** 2
        + 0.0005 * len(primes)
        + 0.002 * abs(math.log10(lr) - math.log10(5e-4))
    )


def playbook_terms(sets: dict) -> float:
    """What the playbook's knobs add to the objective (0 for a knob not set)."""
    extra = 0.0
    if "optim.warmup_steps" in sets:
        extra += 0.0005 * abs(int(sets["optim.warmup_steps"]) - 10) / 40
    if "optim.ema_decay" in sets:
        extra += 0.001 * abs(math.log10(1 - float(sets["optim.ema_decay"])) - math.log10(0.03))
    if "model.hidden" in sets:
        extra += 0.0005 * (int(sets["model.hidden"]) < 64)
    if "model.depth" in sets:
        extra += 0.0003 * (int(sets["model.depth"]) < 3)
    if "model.layer" in sets:
        extra += 0.0002 * (sets["model.layer"] != "gatv2")
    if "train.max_horizon" in sets:
        extra += 0.002 * ((math.log2(int(sets["train.max_horizon"])) - 5) ** 2 / 25 - 1)  # 0 at 1
    if sets.get("train.freeze_bottom_layers_on_expand") == "true":
        extra += 0.0002
    if "train.height_temperature" in sets:
        extra += 0.001 * abs(float(sets["train.height_temperature"]) - 0.7)
    return extra


def gates(sets: dict) -> dict:
    """final.json `gates`: passing values, or failing ones for a trial FAKE_GATE_FAIL matches."""
    match = [kv.partition("=") for kv in os.environ.get("FAKE_GATE_FAIL", "").split(",") if kv]
    fail = bool(match) and all(sets.get(k) == v for k, _, v in match)
    return {
        "spacing_ks": 0.3 if fail else 0.05,
        "block_variance_logratio": 0.2,
        "nonpositive_fraction": 0.05 if fail else 0.0,
    }


def window_set(name: str, first: int, count: int, model_mean: float, seed: int) -> dict:
    """`windows[name]` of final.json: starts, and each window's error of the model and every baseline."""
    shared = random.Random(f"windows-{name}")
    hard = [math.exp(WINDOW_SPREAD * shared.gauss(0, 1)) for _ in range(count)]
    norm = statistics.fmean(hard)
    out = {"start": [first + 200 * i for i in range(count)]}
    for b, mean in BASELINES.items():
        rb = random.Random(f"{b}-{name}")
        out[b] = [mean * h / norm * (1 + OWN_NOISE * rb.gauss(0, 1)) for h in hard]
    rm = random.Random(f"model-{name}-{seed}")
    out["model"] = [model_mean * h / norm * (1 + OWN_NOISE * rm.gauss(0, 1)) for h in hard]
    return out


def set_metrics(prefix: str, windows: dict) -> dict:
    """The scalar keys of one window set (docs/contracts.md), from its per-window errors."""
    n = len(windows["model"])
    means = {b: statistics.fmean(windows[b]) for b in BASELINES}
    best = min(means, key=means.__getitem__)
    diffs = [m - b for m, b in zip(windows["model"], windows[best], strict=True)]
    error = statistics.fmean(windows["model"])
    return {
        f"{prefix}extrapolation_error": error,
        f"{prefix}extrapolation_stderr": statistics.stdev(windows["model"]) / math.sqrt(n),
        **{f"{prefix}{b}": v for b, v in means.items()},
        f"{prefix}best_baseline": best,
        f"{prefix}paired_diff": statistics.fmean(diffs),
        f"{prefix}paired_stderr": statistics.stdev(diffs) / math.sqrt(n),
        f"{prefix}skill": 1 - error / means[best],
    }


def window_layout(sets: dict) -> tuple[dict, dict]:
    """Window counts (the trainer's `data.*windows` keys) and first starts of val, tune and test."""
    counts = {
        name: int(sets.get(key, default))
        for name, key, default in (
            ("val", "data.val_windows", 4),
            ("tune", "data.windows", 6),
            ("test", "data.test_windows", 16),
        )
    }
    firsts = {"val": 20_000, "tune": 20_000 + 200 * counts["val"]}
    firsts["test"] = firsts["tune"] + 200 * counts["tune"]
    return counts, firsts


def final_json(sets: dict, value: float, epochs_done: int, seconds: float) -> dict:
    """A completed trial's final.json whose model error is about `value` on every window set.

    Args:
        sets: the trial's `--set` keys (strings): the seed and the window counts are read.
        value: the model's mean error (before its own per-window noise).
        epochs_done, seconds: as the trainer reports them.
    """
    counts, firsts = window_layout(sets)
    seed = int(sets.get("seed", 0))
    windows = {name: window_set(name, firsts[name], counts[name], value, seed) for name in counts}
    return {
        "status": "completed",
        "epochs_done": epochs_done,
        "seconds": seconds,
        "gates": gates(sets),
        "cost": {
            "seconds_per_step": seconds / max(1, epochs_done),
            "steps": epochs_done,
            "train_seconds": seconds,
            "cpu_seconds": time.process_time(),
            "device": "cpu",
        },
        "val_loss": value,
        "ks_wigner": 0.05,
        "nonpositive_spacings": 0,
        **set_metrics("val_", windows["val"]),
        **set_metrics("", windows["tune"]),
        **set_metrics("test_", windows["test"]),
        "windows": windows,
    }


def main(argv) -> int:
    if len(argv) < 2 or argv[1] != "train":
        print("fake_trainer: only `train` is supported", file=sys.stderr)
        return 2
    sets, out, _config = _parse(argv)
    os.makedirs(out, exist_ok=True)
    trial = os.path.basename(os.path.normpath(out))
    if os.environ.get("FAKE_TRAINER_LOG"):
        fd = os.open(os.environ["FAKE_TRAINER_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{os.environ.get('ZETA_SWARM_JOB', '-')} {out} {os.getpid()}\n".encode())
        os.close(fd)
    starts_path = os.path.join(out, "fake_starts")
    starts = int(open(starts_path).read()) + 1 if os.path.exists(starts_path) else 1
    _write(starts_path, starts)

    behaviour = sets.get("fake.behaviour")
    if behaviour is None:
        if trial in _ids("FAKE_HANG_TRIALS"):
            behaviour = "hang"
        elif trial in _ids("FAKE_FAIL_TRIALS") and starts <= int(os.environ.get("FAKE_FAIL_TIMES", "1")):
            behaviour = "fail"
        elif trial in _ids("FAKE_DIVERGE_TRIALS"):
            behaviour = "diverge"
        else:
            behaviour = "succeed"
    ckpt = os.path.join(out, "checkpoint.pt")
    state = {"epoch": 0}
    if os.path.exists(ckpt):
        state = json.load(open(ckpt))

    def on_term(signum, frame):
        _write(ckpt, state)
        sys.exit(143)

    signal.signal(signal.SIGTERM, on_term)
    with open(os.path.join(out, "config.yaml"), "w") as f:
        for k, v in sorted(sets.items()):
            f.write(f"{k}: {v}\n")
    if behaviour == "fail":
        print("fake_trainer: failing as asked", file=sys.stderr)
        return 1
    if behaviour == "stubborn":  # ignores SIGTERM: only SIGKILL ends it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        behaviour = "hang"
    if behaviour == "hang":
        while True:
            time.sleep(0.05)
    epochs = int(sets.get("train.epochs", 3))
    nll = float(sets.get("loss.gue_nll_weight", 0.02))
    mmd = float(sets.get("loss.gue_mmd_weight", 0.05))
    primes = json.loads(sets.get("model.primes", "[2,3,5,7,11,13]"))
    target = objective(nll, mmd, primes, float(sets.get("optim.lr", 1e-3))) + playbook_terms(sets)
    seed = int(sets.get("seed", 0))
    counts, firsts = window_layout(sets)
    epoch_s = float(os.environ.get("FAKE_EPOCH_S", "0.01"))
    value = target
    while state["epoch"] < epochs:
        time.sleep(epoch_s)
        state["epoch"] += 1
        e = state["epoch"]
        value = target * (1.0 + 2.0 / e)
        val = set_metrics("val_", window_set("val", firsts["val"], counts["val"], value, seed))
        row = {
            "epoch": e,
            "step": e,
            "train/mse": value,
            "val_loss": value,
            "val/mse": value,
            **val,
            "lr": 1e-3,
            "seconds": epoch_s,
            "peak_mem_bytes": 1000,
        }
        with open(os.path.join(out, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")
        _write(ckpt, state)
    final = final_json(sets, value, epochs_done=state["epoch"], seconds=epoch_s * epochs)
    if behaviour == "diverge":
        final = {
            "status": "diverged",
            "epochs_done": 1,
            "seconds": epoch_s,
            "extrapolation_error": None,
            "reason": "loss became nan at epoch 1",
        }
    _write(os.path.join(out, "final.json"), final)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
