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

# (output_dir, file name) -> the file's text, or None when it does not exist (yet).
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


# The three outcomes of an objective against the best baseline on the same windows.
BEATS, WITHIN_NOISE, WORSE = "beats", "within noise", "worse"
# A win must clear the baseline by this many standard errors; closer than that is noise.
NOISE_SIGMAS = 2.0


def vs_baseline(value: float | None, stderr: float | None, baseline: float | None) -> str | None:
    """The one rule for "beats the baseline", used by trials.json, the live log, the leaderboard,
    `status` and the report.

    Args:
        value: the objective (extrapolation error; or a gap to the baseline, with baseline 0).
        stderr: its standard error, same units; None or nan counts as 0.
        baseline: the smallest baseline on the same windows, same units.

    Returns:
        BEATS when value + NOISE_SIGMAS x stderr < baseline, WITHIN_NOISE when value is below the
        baseline by less than that, WORSE otherwise; None when value or baseline is unknown.
    """
    if not _number(value) or not _number(baseline):
        return None
    se = float(stderr) if _number(stderr) else 0.0
    if value + NOISE_SIGMAS * se < baseline:
        return BEATS
    return WITHIN_NOISE if value < baseline else WORSE


def beats_baseline(outcome: str | None) -> bool | None:
    """The `beats_baseline` flag of a vs_baseline outcome: None when it is unknown."""
    return None if outcome is None else outcome == BEATS


def trial_vs_baseline(value: float | None, metrics: dict) -> str | None:
    """vs_baseline of a trial from its final metrics (extrapolation_stderr and the baselines)."""
    return vs_baseline(value, metrics.get("extrapolation_stderr"), best_baseline(metrics))


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
