"""The early-stopping rules, as functions of the curves they are given (no I/O: the controller
reads the curves and applies the verdict), and their models (`early_stopping:` of a phase file or
of a profile's phase entry).

A curve is a trial's metrics.jsonl rows by epoch. The rules read the val windows' keys only
(docs/contracts.md): the intermediate objective, and the paired difference to the best baseline
with its standard error.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import Field

from orchestrator.schema import Strict
from orchestrator.trial_outputs import best_baseline_name

Curve = dict[int, dict[str, Any]]

# metrics.jsonl keys of the val windows, the only ones evaluated per epoch (docs/contracts.md): the
# intermediate reports, the median rule and the baseline rule read these; the tuner's final value
# is final.json's `extrapolation_error` (tune windows).
VAL_OBJECTIVE, VAL_DIFF, VAL_STDERR = "val_extrapolation_error", "val_paired_diff", "val_paired_stderr"


class BaselineSigmaRule(Strict):
    """The seed playbook's rule, paired: at `at_fraction` of the epoch budget, stop a trial whose
    mean difference to the best baseline on the val windows (`val_paired_diff`) is not at least
    `sigmas` paired standard errors (`val_paired_stderr`) below zero."""

    enabled: bool = True
    at_fraction: Annotated[float, Field(ge=0.3, le=0.4)] = 0.35
    sigmas: Annotated[float, Field(gt=0)] = 1.0


class MedianRule(Strict):
    """Stop a trial whose best intermediate objective (val windows) is worse than the median of the
    other trials at the same epoch, once `warmup_fraction` of the budget is done and `min_trials` others have reached it."""

    enabled: bool = True
    warmup_fraction: Annotated[float, Field(ge=0, le=1)] = 0.3
    min_trials: Annotated[int, Field(ge=1)] = 5


class EarlyStopping(Strict):
    baseline_sigma: BaselineSigmaRule = BaselineSigmaRule()
    median: MedianRule = MedianRule()


# A round whose kind never stops a trial early (rounds.RoundKind.stops_early) runs with these.
EARLY_STOPPING_OFF = EarlyStopping(
    baseline_sigma=BaselineSigmaRule(enabled=False), median=MedianRule(enabled=False)
)


def baseline_rule(rule: BaselineSigmaRule, curve: Curve, epochs: int) -> str | None:
    """Paired, on the val windows: stop unless the model is `sigmas` paired s.e. better than the
    best baseline on those windows by `at_fraction` of the budget. The reason, or None."""
    if not rule.enabled or not curve:
        return None
    due = [e for e in sorted(curve) if e >= rule.at_fraction * epochs]
    if not due or due[0] >= epochs:
        return None
    row = curve[due[0]]
    diff, stderr = row.get(VAL_DIFF), row.get(VAL_STDERR)
    if not (finite(diff) and finite(stderr)) or diff + rule.sigmas * stderr < 0:
        return None
    name = row.get("val_best_baseline") or best_baseline_name(row, "val_") or "?"
    return (
        f"early stop at epoch {due[0]}/{epochs}: on the val windows the model minus "
        f"the best baseline ({name}) is {diff:+.4g}, not {rule.sigmas:g} paired sigma "
        f"({stderr:.3g}) below 0"
    )


def median_due(rule: MedianRule, curve: Curve, epochs: int) -> bool:
    """Whether the median rule judges this curve now (so its peers' curves are worth reading)."""
    return rule.enabled and bool(curve) and rule.warmup_fraction * epochs <= max(curve) < epochs


def median_rule(rule: MedianRule, curve: Curve, peers: Iterable[Curve], epochs: int) -> str | None:
    """Stop a trial whose best value so far is worse than the median of its peers' best values up
    to the same epoch (peers that reached it), once `min_trials` peers have. The reason, or None."""
    if not median_due(rule, curve, epochs):
        return None
    last = max(curve)
    mine = best_upto(curve, last)
    others = [v for pc in peers if any(e >= last for e in pc) and (v := best_upto(pc, last)) is not None]
    if mine is None or len(others) < rule.min_trials:
        return None
    med = statistics.median(others)
    if mine <= med:
        return None
    return (
        f"early stop at epoch {last}/{epochs}: best {mine:.4g} is worse than the "
        f"median {med:.4g} of {len(others)} trials"
    )


def finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def best_upto(curve: Curve, epoch: int) -> float | None:
    """The lowest val objective at or before `epoch` (the best so far), or None."""
    values = [r.get(VAL_OBJECTIVE) for e, r in curve.items() if e <= epoch]
    values = [float(v) for v in values if finite(v)]
    return min(values) if values else None


def last_value(curve: Curve) -> float | None:
    """The val objective of the latest epoch that has a finite one, or None."""
    for e in sorted(curve, reverse=True):
        v = curve[e].get(VAL_OBJECTIVE)
        if finite(v):
            return float(v)
    return None
