"""Ranking and text views of a run, from its trials.json object only (fast: no optuna, no numpy).

Ranking is by the objective (extrapolation_error on the tune windows, lower is better) with its
standard error. Replicas of one configuration (phase 3: the same params but the seed) are pooled:
mean of the replica objectives. Against the best baseline on the same windows a row beats it, is
within noise, or is worse by the paired rule (orchestrator.trial_outputs.vs_baseline): a trial from
its `paired_diff` and `paired_stderr`; pooled seeds from their per-window errors averaged over the
seeds, when the caller has them (`windows`), else from the seeds' paired figures (see `_pooled`).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections import Counter
from typing import Any

from orchestrator.run_files import STATES
from orchestrator.trial_outputs import (
    BEATS,
    WITHIN_NOISE,
    WORSE,
    beats_baseline,
    best_baseline,
    best_baseline_name,
    pooled_paired,
    trial_vs_baseline,
)

BASELINE_LABELS = {
    "baseline_index": "index",
    "baseline_ar": "AR(50)",
    "baseline_explicit": "explicit formula",
    "baseline_smoothed": "smoothed prime sum",
    "baseline_smoothed_ar": "smoothed + AR",
}


def summary(snap: dict[str, Any]) -> dict[str, Any]:
    """Counts by state, the best trial, GPU-hours and cost: the `summary` of `status --json`."""
    trials = snap.get("trials", [])
    counts = Counter(t["state"] for t in trials)
    ranked = rank(snap)
    best = ranked[0] if ranked else None
    budget = snap.get("budget", {})
    return {
        "counts": {s: counts.get(s, 0) for s in STATES},
        "total": len(trials),
        "best": best,
        "best_baseline": best_baseline_value(snap),
        "gpu_hours": budget.get("gpu_hours"),
        "cost": budget.get("cost"),
        "currency": budget.get("currency"),
    }


def best_baseline_value(snap: dict[str, Any]) -> float | None:
    values = [v for v in (snap.get("baselines") or {}).values() if isinstance(v, int | float)]
    return min(values) if values else None


def _config_key(params: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in params.items() if k != "seed"}, sort_keys=True)


def rank(
    snap: dict[str, Any],
    pool_replicas: bool | None = None,
    windows: dict[str, dict] | None = None,
) -> list[dict[str, Any]]:
    """Completed trials (or pooled configurations), best first.

    Args:
        snap: the trials.json object.
        pool_replicas: pool trials that differ only in `seed`; None = when any configuration has
            more than one completed replica.
        windows: trial id -> `windows.tune` of its final.json (per-window errors), where the caller
            has read them; pooled rows are then paired per window over the seed-averaged errors.

    Returns:
        Rows with `ids`, `params` (without seed when pooled), `value`, `stderr`, `n`, `best_baseline`
        (its value), `best_baseline_name`, `paired_diff`, `paired_stderr`, `vs_baseline` (beats,
        within noise, worse or None) and `beats_baseline` (bool or None).
    """
    done = [
        t
        for t in snap.get("trials", [])
        if t["state"] == "COMPLETED" and isinstance(t.get("value"), int | float)
    ]
    groups: dict[str, list[dict]] = {}
    for t in done:
        groups.setdefault(_config_key(t["params"]) if pool_replicas is not False else t["id"], []).append(t)
    if pool_replicas is None and not any(len(g) > 1 for g in groups.values()):
        groups = {t["id"]: [t] for t in done}
    rows = []
    for members in groups.values():
        if len(members) > 1:
            row = _pooled(members, windows or {})
        else:
            m = members[0]
            metrics = m.get("metrics", {})
            row = {
                "ids": [m["id"]],
                "params": m["params"],
                "value": float(m["value"]),
                "stderr": m.get("stderr"),
                "n": 1,
                "best_baseline": best_baseline(metrics),
                "best_baseline_name": best_baseline_name(metrics),
                "paired_diff": metrics.get("paired_diff"),
                "paired_stderr": metrics.get("paired_stderr"),
                "vs_baseline": trial_vs_baseline(metrics),
            }
        if row["best_baseline"] is None:
            row["best_baseline"] = best_baseline_value(snap)
        row["beats_baseline"] = beats_baseline(row["vs_baseline"])
        rows.append(row)
    rows.sort(key=lambda r: r["value"])
    return rows


def _pooled(members: list[dict], windows: dict[str, dict]) -> dict[str, Any]:
    """One row for the seeds of a configuration, paired against the best baseline on the tune
    windows (orchestrator.trial_outputs.pooled_paired: per window over the seed-averaged errors
    when `windows` has every seed's, else the seeds' paired figures, an upper bound on the s.e.)."""
    params = {k: v for k, v in members[0]["params"].items() if k != "seed"}
    value = statistics.fmean(float(m["value"]) for m in members)
    # The objective's own s.e.: the seeds share their windows, so the windows' s.e. (the seeds' mean,
    # an upper bound as in pooled_paired), not the seed spread, which is 0 for seeds that agree.
    window_ses = [e for m in members if _num(e := m.get("stderr"))]
    row: dict[str, Any] = {
        "ids": [m["id"] for m in members],
        "params": params,
        "value": value,
        "stderr": statistics.fmean(window_ses) if len(window_ses) == len(members) else None,
        "n": len(members),
    }
    # In trials.json the tune objective is a trial's `value`, not one of its metrics.
    finals = [{**m.get("metrics", {}), "extrapolation_error": m["value"]} for m in members]
    p = pooled_paired(finals, [windows.get(m["id"]) for m in members])
    if p is None:
        return row | {
            "best_baseline": None,
            "best_baseline_name": None,
            "paired_diff": None,
            "paired_stderr": None,
            "vs_baseline": None,
        }
    return row | {
        "best_baseline": p.baseline_error,
        "best_baseline_name": p.baseline,
        "paired_diff": p.diff,
        "paired_stderr": p.stderr,
        "vs_baseline": p.outcome,
    }


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _fmt_params(params: dict[str, Any]) -> str:
    short = []
    for k, v in params.items():
        name = k.split(".")[-1].replace("_weight", "")
        short.append(f"{name}={v:.4g}" if isinstance(v, float) else f"{name}={v}")
    return " ".join(short)


def _pm(value: float | None, stderr: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    v = f"{value:+.5f}" if signed else f"{value:.5f}"
    return f"{v} ± {stderr:.5f}" if _num(stderr) else v


def format_leaderboard(snap: dict[str, Any], top: int = 10) -> str:
    """The leaderboard: objective ± stderr beside the baselines, best first."""
    rows = rank(snap)
    base = snap.get("baselines") or {}
    lines = [f"Leaderboard — {snap.get('study')} (extrapolation error on the tune windows, lower is better)"]
    if base:
        lines.append(
            "  baselines on the tune windows: "
            + ", ".join(
                f"{BASELINE_LABELS.get(k, k)} {v:.5f}" for k, v in sorted(base.items(), key=lambda kv: kv[1])
            )
        )
    if not rows:
        lines.append("  no completed trial yet")
        return "\n".join(lines)
    pooled = any(r["n"] > 1 for r in rows)
    lines.append(
        f"  {'rank':>4}  {'trial' + ('s' if pooled else ''):<12} {'objective ± stderr':<22} "
        f"{'- best baseline ± paired se':<28} {'beats baseline':<15} params"
    )
    for i, r in enumerate(rows[:top], 1):
        ids = ",".join(r["ids"]) if len(r["ids"]) <= 3 else f"{r['ids'][0]}..(+{len(r['ids']) - 1})"
        beats = {BEATS: "yes", WITHIN_NOISE: "within noise", WORSE: "NO", None: "?"}[r["vs_baseline"]]
        lines.append(
            f"  {i:>4}  {ids:<12} {_pm(r['value'], r['stderr']):<22} "
            f"{_pm(r['paired_diff'], r['paired_stderr'], signed=True):<28} {beats:<15} {_fmt_params(r['params'])}"
        )
    if len(rows) > top:
        lines.append(f"  ... {len(rows) - top} more")
    if not any(r["beats_baseline"] for r in rows):
        lines.append(
            "  No trial beats the best baseline (paired over the same windows, by 2 s.e.): "
            "nothing here has learned more than classical number theory."
        )
    return "\n".join(lines)


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def format_status(snap: dict[str, Any], now: float | None = None) -> str:
    """`orchestrator status`: trials by state, running trials with age, best ± stderr, GPU-hours and cost."""
    now = time.time() if now is None else now
    s = summary(snap)
    budget = snap.get("budget", {})
    lines = [
        f"{snap.get('study')}  phase {snap.get('phase')}  team {snap.get('team')}  backend {snap.get('backend')}"
        f"  (updated {_age(now - float(snap.get('updated', now)))} ago)",
        "trials: "
        + "  ".join(f"{k.lower()} {v}" for k, v in s["counts"].items())
        + f"  (total {s['total']})",
    ]
    running = [t for t in snap.get("trials", []) if t["state"] == "RUNNING"]
    for t in running:
        age = _age(now - t["started"]) if t.get("started") else "-"
        lines.append(
            f"  running  trial {t['id']:<5} {age:>8}  attempt {t.get('attempts', 1)}  {t.get('machine') or '-'}"
            f"  {_fmt_params(t['params'])}" + (f"  {t['job_detail']}" if t.get("job_detail") else "")
        )
    best = s["best"]
    if best:
        beats = {
            BEATS: "beats",
            WITHIN_NOISE: "is within noise of",
            WORSE: "does NOT beat",
            None: "cannot compare with",
        }[best["vs_baseline"]]
        base = f"{best['best_baseline']:.5f}" if best["best_baseline"] is not None else "?"
        name = BASELINE_LABELS.get(best["best_baseline_name"] or "", best["best_baseline_name"] or "")
        diff = _pm(best["paired_diff"], best["paired_stderr"], signed=True)
        lines.append(
            f"best: {_pm(best['value'], best['stderr'])} (trial {','.join(best['ids'])}; {beats} the best baseline"
            f"{' ' + name if name else ''} {base}: paired difference {diff})"
            f"  {_fmt_params(best['params'])}"
        )
    else:
        lines.append("best: no completed trial yet")
    if budget:
        lines.append(
            f"GPU-hours {budget.get('gpu_hours', 0):.3f} of cap {budget.get('gpu_hour_cap', 0):g}; "
            f"cost estimate {budget.get('cost', 0):.2f} {budget.get('currency', '')} "
            f"({budget.get('machine', '')} at {budget.get('price_per_hour', 0):g}/h)"
        )
    return "\n".join(lines)
