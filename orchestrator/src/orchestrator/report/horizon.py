"""Horizon curves: the squared error at each step k = 1..H of the rollout, for the model and every
baseline, on the tune and the test windows (predictions.json `horizon_curves`, docs/contracts.md).

Where the error grows with k tells what the objective, a mean over k, hides: a model can beat a
baseline over the first steps and lose beyond them. Two figures:
  * horizon.png: the champion (the best completed trial of all runs) against every baseline;
  * arm_horizons.png: each arm's curve, its seeds averaged step by step: the arms of an
    experiment (`orchestrator compare`) and the configurations of a phase-3 run (replicas of one
    configuration pooled), against the baselines averaged over all of them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from orchestrator.report.load import Loaded, Run, Trial
from orchestrator.report.plots import _pyplot, _save

SETS = ("tune", "test")
SET_TITLES = {"tune": "tune windows (the objective)", "test": "test windows (held out)"}
# name -> (label, colour, line style); a baseline not listed here gets a grey dash-dot line.
BASELINE_STYLE = {
    "baseline_index": ("index", "tab:gray", ":"),
    "baseline_ar": ("causal AR", "tab:brown", "-."),
    "baseline_explicit": ("explicit formula", "tab:red", "--"),
    "baseline_smoothed": ("smoothed prime sum", "tab:purple", "--"),
    "baseline_smoothed_ar": ("smoothed + AR", "tab:pink", "-."),
}


def curves(trial: Trial, window_set: str) -> dict[str, list[float]]:
    """`model` and each `baseline_<name>` of a trial's horizon curve on one window set ({} when absent).

    Args:
        trial: a completed trial (its predictions.json).
        window_set: "tune" or "test".
    """
    block = ((trial.predictions or {}).get("horizon_curves") or {}).get(window_set) or {}
    out = {}
    for name, values in block.items():
        if name == "k" or not isinstance(values, list) or not values:
            continue
        if all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            out[name] = [float(v) for v in values]
    return out


def mean_curves(trials: Sequence[Trial], window_set: str) -> dict[str, list[float]]:
    """Each curve averaged step by step over the trials that have it (seeds of one arm)."""
    sums: dict[str, list[list[float]]] = {}
    for t in trials:
        for name, values in curves(t, window_set).items():
            sums.setdefault(name, []).append(values)
    out = {}
    for name, members in sums.items():
        h = min(len(v) for v in members)
        out[name] = [math.fsum(v[k] for v in members) / len(members) for k in range(h)]
    return out


def champion(loaded: Loaded) -> tuple[Run, Trial] | None:
    """The best completed trial of all runs that has horizon curves."""
    done = [(r, t) for r in loaded.runs for t in r.completed if curves(t, "tune") or curves(t, "test")]
    return min(done, key=lambda rt: rt[1].value) if done else None


def arms(loaded: Loaded) -> list[tuple[str, list[Trial]]]:
    """(label, completed trials) per arm: each experiment arm, and each configuration of a phase-3
    run (its replicas, which differ only in `seed`)."""
    out: list[tuple[str, list[Trial]]] = []
    for exp in loaded.experiments:
        out += [(r.arm or r.label, r.completed) for r in exp.arms if r.completed]
    in_experiment = {id(r) for e in loaded.experiments for r in e.arms}
    for run in loaded.runs:
        if id(run) in in_experiment or str(run.phase) != "3":
            continue
        groups: dict[str, list[Trial]] = {}
        for t in run.completed:
            key = json.dumps({k: v for k, v in t.params.items() if k != "seed"}, sort_keys=True, default=str)
            groups.setdefault(key, []).append(t)
        ranked = sorted(groups.values(), key=lambda ts: math.fsum(t.value for t in ts) / len(ts))
        for i, members in enumerate(ranked, start=1):
            mode = members[0].params.get("train.mode")
            out.append((f"#{i}" + (f" {mode}" if mode else "") + f" ({len(members)} seeds)", members))
    return [(label, ts) for label, ts in out if any(curves(t, s) for t in ts for s in SETS)]


def _baseline_lines(ax, named: dict[str, list[float]]) -> None:
    for name in sorted(k for k in named if k.startswith("baseline_")):
        label, color, style = BASELINE_STYLE.get(name, (name.removeprefix("baseline_"), "tab:olive", "-."))
        values = named[name]
        ax.plot(range(1, len(values) + 1), values, style, color=color, linewidth=1.3, label=label)


def _panels(plt, title: str):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    fig.suptitle(title, fontsize=11)
    return fig, dict(zip(SETS, axes, strict=True))


def _finish(ax, window_set: str) -> None:
    ax.set_yscale("log")
    ax.set_xlabel("step k of the rollout")
    ax.set_title(SET_TITLES[window_set], fontsize=9)
    ax.legend(fontsize=7)


def horizon(loaded: Loaded, path: Path) -> bool:
    """horizon.png: the champion's error at each step k against every baseline, tune and test.

    Args:
        loaded: the report's runs.
        path: PNG file to write; nothing is written when no completed trial has horizon curves.
    """
    best = champion(loaded)
    if best is None:
        return False
    run, trial = best
    plt = _pyplot()
    fig, axes = _panels(
        plt, f"Error at each step k: champion trial {trial.id} ({run.label}) against the baselines"
    )
    for window_set, ax in axes.items():
        named = curves(trial, window_set)
        if "model" in named:
            ax.plot(
                range(1, len(named["model"]) + 1), named["model"], color="black", linewidth=2, label="model"
            )
        _baseline_lines(ax, named)
        if named:
            _finish(ax, window_set)
        else:
            ax.set_title(f"{SET_TITLES[window_set]}: not recorded", fontsize=9)
    axes["tune"].set_ylabel("squared error, mean over windows")
    return _save(fig, path)


def arm_horizons(loaded: Loaded, path: Path) -> bool:
    """arm_horizons.png: each arm's error at each step k (its seeds averaged), tune and test.

    Args:
        loaded: the report's runs (experiments and phase-3 runs have arms).
        path: PNG file to write; nothing is written without an arm that has horizon curves.
    """
    groups = arms(loaded)
    if not groups:
        return False
    plt = _pyplot()
    fig, axes = _panels(plt, "Error at each step k per arm (seeds averaged) against the baselines")
    everyone = [t for _, ts in groups for t in ts]
    for window_set, ax in axes.items():
        drawn = False
        for i, (label, members) in enumerate(groups):
            model = mean_curves(members, window_set).get("model")
            if model:
                ax.plot(range(1, len(model) + 1), model, color=f"C{i % 10}", linewidth=1.8, label=label)
                drawn = True
        _baseline_lines(ax, {k: v for k, v in mean_curves(everyone, window_set).items() if k != "model"})
        if drawn:
            _finish(ax, window_set)
        else:
            ax.set_title(f"{SET_TITLES[window_set]}: not recorded", fontsize=9)
    axes["tune"].set_ylabel("squared error, mean over windows and seeds")
    return _save(fig, path)
