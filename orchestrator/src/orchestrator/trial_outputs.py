"""Reading a trial's output files (docs/contracts.md): `metrics.jsonl` rows and `final.json`.

The orchestrator never reads tensors, only these JSON files; a half-written last line (the trainer
is appending while we read) is ignored until it is complete.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

BASELINE_KEYS = ("baseline_index", "baseline_ar", "baseline_explicit")
FINAL_METRIC_KEYS = ("extrapolation_stderr", *BASELINE_KEYS, "skill", "epochs_done", "seconds", "ks_wigner")

Reader = Callable[[str, str], "str | None"]


def parse_metrics(text: str | None) -> list[dict]:
    """Rows of metrics.jsonl that are complete JSON objects, in file order."""
    rows = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # the trainer is still writing this line
        if isinstance(row, dict) and "epoch" in row:
            rows.append(row)
    return rows


def parse_final(text: str | None) -> dict | None:
    """final.json as a dict, or None when it is missing or not (yet) valid JSON."""
    if not text:
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def best_baseline(row: dict) -> float | None:
    """The smallest of the three baselines on the same windows (the number a model must beat)."""
    values = [row.get(k) for k in BASELINE_KEYS]
    finite = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return min(finite) if finite else None


def final_metrics(final: dict) -> dict[str, float]:
    """The numeric final metrics the tuner stores beside the objective."""
    out = {}
    for key in FINAL_METRIC_KEYS:
        v = final.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[key] = float(v)
    return out


def beats_baseline(value: float | None, metrics: dict) -> bool | None:
    """Whether an objective is below the best baseline; None when either is unknown."""
    base = best_baseline(metrics)
    if value is None or base is None:
        return None
    return value < base
