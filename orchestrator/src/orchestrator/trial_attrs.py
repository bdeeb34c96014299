"""The user attributes a completed trial carries in its study, so a study viewer (optuna-dashboard's
trial table) shows what the leaderboard shows: every baseline on the tuned windows, the paired
verdict against the best of them, and where the trial's files are.

Set by the controller from the trial's final.json just before it completes the trial
(`Tuner.annotate`); values are plain strings and numbers, one column each in the dashboard.
"""

from __future__ import annotations

import math
from typing import Any

from orchestrator.trial_outputs import baselines, best_baseline_name, trial_vs_baseline


def trial_attrs(final: dict[str, Any], output_dir: str) -> dict[str, str | float]:
    """`output_dir`, `stderr`, each `baseline_<name>` of the tune windows, `best_baseline`,
    `paired_diff`, `paired_stderr` and `vs_baseline` ("beats", "within noise", "worse"): the
    paired rule of orchestrator.trial_outputs, the leaderboard's.

    Args:
        final: the trial's final.json (docs/contracts.md).
        output_dir: the trial's output directory (local path or gs:// URL).
    """
    attrs: dict[str, str | float] = {"output_dir": output_dir}
    for key, name in (("extrapolation_stderr", "stderr"), ("paired_diff", None), ("paired_stderr", None)):
        if _number(v := final.get(key)):
            attrs[name or key] = float(v)
    attrs.update(baselines(final))
    if (best := best_baseline_name(final)) is not None:
        attrs["best_baseline"] = best
    if (verdict := trial_vs_baseline(final)) is not None:
        attrs["vs_baseline"] = verdict
    return attrs


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
