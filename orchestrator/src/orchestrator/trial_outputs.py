"""Reading a trial's output files (docs/contracts.md): `metrics.jsonl` rows and `final.json`, and the
one paired rule that says whether a model beats the best baseline.

The orchestrator never reads tensors, only these JSON files; a half-written last line (the trainer
is appending while we read) is ignored until it is complete.

Window sets (docs/contracts.md "Baselines and window sets"): a key's prefix names the set, `val_`
(early stopping, per epoch in metrics.jsonl), `""` (tune: the objective) and `test_` (the final
claim). Every key that starts with `<prefix>baseline_` is a baseline; the best is the smallest.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

VAL, TUNE, TEST = "val_", "", "test_"
BASELINE_PREFIX = "baseline_"
# Per window set, the scalars of final.json the tuner stores beside the objective (plus every
# baseline, found by prefix); the val set is left out: metrics.jsonl has its curve.
_SET_KEYS = ("extrapolation_error", "extrapolation_stderr", "paired_diff", "paired_stderr", "skill")
_TRIAL_KEYS = ("epochs_done", "seconds", "ks_wigner", "nonpositive_spacings")
GATE_PREFIX = "gate_"

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


def baselines(row: dict, prefix: str = TUNE) -> dict[str, float]:
    """Every baseline of one window set, name -> mean error: the keys `<prefix>baseline_<name>`
    with a finite value, named without the prefix (`baseline_smoothed`)."""
    start = prefix + BASELINE_PREFIX
    return {k[len(prefix) :]: float(v) for k, v in row.items() if k.startswith(start) and _number(v)}


def best_baseline_name(row: dict, prefix: str = TUNE) -> str | None:
    """The name of the smallest baseline of one window set (the one a model must beat), or None."""
    values = baselines(row, prefix)
    return min(values, key=values.__getitem__) if values else None


def best_baseline(row: dict, prefix: str = TUNE) -> float | None:
    """The smallest baseline of one window set, on the same windows as the model, or None."""
    name = best_baseline_name(row, prefix)
    return None if name is None else baselines(row, prefix)[name]


def final_metrics(final: dict) -> dict[str, float]:
    """The numeric final metrics the tuner stores beside the objective: for the tune and test
    windows the error, its s.e., every baseline, the paired difference to the best baseline and
    its s.e., and the skill; then epochs, seconds, ks_wigner and the count of spacings <= 0; then
    each of final.json's `gates` as `gate_<name>`."""
    out = {}
    for prefix in (TUNE, TEST):
        for key in _SET_KEYS:
            if key == "extrapolation_error" and prefix == TUNE:
                continue  # that is the objective itself
            if _number(v := final.get(prefix + key)):
                out[prefix + key] = float(v)
        out.update({prefix + k: v for k, v in baselines(final, prefix).items()})
    for key in _TRIAL_KEYS:
        if _number(v := final.get(key)):
            out[key] = float(v)
    # The physics gates (the playbook ranks and promotes on them): `gate_<name>`.
    gates = final.get("gates")
    for key, v in gates.items() if isinstance(gates, dict) else ():
        if _number(v):
            out[GATE_PREFIX + key] = float(v)
    return out


# The three outcomes of a model against the best baseline on the same windows.
BEATS, WITHIN_NOISE, WORSE = "beats", "within noise", "worse"
# A win must clear the baseline by this many paired standard errors; closer than that is noise.
NOISE_SIGMAS = 2.0


def vs_baseline(diff: float | None, stderr: float | None) -> str | None:
    """The one rule for "beats the baseline" (docs/contracts.md "Paired verdict"), used by
    trials.json, the live log, the leaderboard, `status`, phase 3, `compare` and the report.

    Args:
        diff: mean over the windows of (model error - best baseline's error) on each window.
        stderr: its paired standard error (of the per-window differences); None or nan counts as 0.

    Returns:
        BEATS when diff + NOISE_SIGMAS x stderr < 0, WITHIN_NOISE when diff < 0 by less than that,
        WORSE when diff >= 0; None when diff is unknown.
    """
    if not _number(diff):
        return None
    se = float(stderr) if _number(stderr) else 0.0
    if diff + NOISE_SIGMAS * se < 0:
        return BEATS
    return WITHIN_NOISE if diff < 0 else WORSE


def beats_baseline(outcome: str | None) -> bool | None:
    """The `beats_baseline` flag of a vs_baseline outcome: None when it is unknown."""
    return None if outcome is None else outcome == BEATS


def trial_vs_baseline(metrics: dict, prefix: str = TUNE) -> str | None:
    """vs_baseline of one trial on one window set, from its `<prefix>paired_diff` and
    `<prefix>paired_stderr` (final.json, the tuner's metrics or a metrics.jsonl row)."""
    return vs_baseline(metrics.get(prefix + "paired_diff"), metrics.get(prefix + "paired_stderr"))


@dataclass(frozen=True)
class Paired:
    """A model (one trial, or several seeds averaged per window) against the best baseline on the
    same windows."""

    error: float  # mean model error over the windows
    baseline: str  # name of the best baseline (smallest mean on these windows)
    baseline_error: float
    diff: float  # mean over windows of model - best baseline
    stderr: float  # paired standard error of diff (nan with one window)
    windows: int | None  # None: from final.json's scalars, without the per-window errors
    seeds: int

    @property
    def outcome(self) -> str | None:
        return vs_baseline(self.diff, self.stderr)


class WindowMismatch(ValueError):
    """Seeds to be averaged per window were not scored on the same windows."""


def paired_over_seeds(sets: Sequence[dict]) -> Paired:
    """Average each window's model error over the seeds, then pair it with the best baseline.

    Args:
        sets: one `windows[<set>]` object of final.json per seed: `start`, `model` and
            `baseline_<name>` lists, one entry per window, the same windows in every seed.

    Raises:
        WindowMismatch: no seeds, or seeds whose windows differ (they cannot be paired).
    """
    n = _check_windows(sets)
    names = sorted({k for s in sets for k in s if k.startswith(BASELINE_PREFIX)})
    for s in sets:
        for key in names:
            if len(s.get(key) or []) != n:
                raise WindowMismatch(f"`{key}` has {len(s.get(key) or [])} entries for {n} windows")
    # Baselines see no seed; averaging them too keeps this exact if a trainer ever seeds them.
    base = {b: _seed_mean(sets, b) for b in names}
    return _pair(_seed_mean(sets, "model"), base, seeds=len(sets))


def paired_difference(a_sets: Sequence[dict], b_sets: Sequence[dict]) -> tuple[float, float, int]:
    """Arm a minus arm b on the same windows, each arm's model error seed-averaged per window first.

    Args:
        a_sets, b_sets: `windows[<set>]` objects (one per seed) of the two arms.

    Returns:
        (mean difference, its paired standard error, number of windows).

    Raises:
        WindowMismatch: the arms or seeds were not scored on the same windows.
    """
    n = _check_windows([*a_sets, *b_sets])
    d = [x - y for x, y in zip(_seed_mean(a_sets, "model"), _seed_mean(b_sets, "model"), strict=True)]
    return statistics.fmean(d), _stderr(d), n


def pooled_paired(
    finals: Sequence[dict], window_sets: Sequence[dict | None], prefix: str = TUNE
) -> Paired | None:
    """One configuration (one trial, or its seeds) against the best baseline on one window set.

    With every seed's per-window errors: `paired_over_seeds`. Without them (trials.json, or old
    files): from the scalars, the mean of the seeds' `<prefix>paired_diff` with the mean of their
    `<prefix>paired_stderr`. The s.e. of an average of seeds is never larger than the mean of their
    s.e.s (the triangle inequality for standard deviations) and equals it when the seeds agree
    window by window, so the fallback errs towards "within noise"; exact for one trial. Never the
    seed spread alone: the seeds share their windows.

    Args:
        finals: final.json objects (or the tuner's metrics) of the seeds.
        window_sets: each seed's `windows[<set>]`, or None where it is not at hand.
        prefix: the window set's key prefix, TUNE or TEST.

    Returns:
        None when a seed lacks the paired figures.
    """
    if finals and len(window_sets) == len(finals) and all(window_sets):
        try:
            return paired_over_seeds(window_sets)  # type: ignore[arg-type]
        except WindowMismatch:
            pass  # not pairable per window; the scalars below still are
    diffs = [float(d) for f in finals if _number(d := f.get(prefix + "paired_diff"))]
    ses = [float(e) for f in finals if _number(e := f.get(prefix + "paired_stderr"))]
    errors = [float(e) for f in finals if _number(e := f.get(prefix + "extrapolation_error"))]
    names = {best_baseline_name(f, prefix) for f in finals}
    if not finals or len(diffs) != len(finals) or len(ses) != len(finals) or len(names) != 1 or None in names:
        return None
    name = names.pop()
    return Paired(
        error=statistics.fmean(errors) if len(errors) == len(finals) else math.nan,
        baseline=name,
        baseline_error=statistics.fmean(baselines(f, prefix)[name] for f in finals),
        diff=statistics.fmean(diffs),
        stderr=statistics.fmean(ses),
        windows=None,
        seeds=len(finals),
    )


def _check_windows(sets: Sequence[dict]) -> int:
    if not sets:
        raise WindowMismatch("no per-window errors to pair")
    starts = [list(s.get("start") or []) for s in sets]
    if not starts[0] or any(st != starts[0] for st in starts):
        raise WindowMismatch("not scored on the same windows (the `start` lists differ)")
    n = len(starts[0])
    for s in sets:
        if len(s.get("model") or []) != n:
            raise WindowMismatch(f"`model` has {len(s.get('model') or [])} entries for {n} windows")
    return n


def _seed_mean(sets: Sequence[dict], key: str) -> list[float]:
    n = len(sets[0]["start"])
    return [math.fsum(float(s[key][w]) for s in sets) / len(sets) for w in range(n)]


def _pair(model: list[float], base: dict[str, list[float]], seeds: int) -> Paired:
    if not base:
        raise WindowMismatch("no baseline_<name> errors per window")
    best = min(base, key=lambda b: math.fsum(base[b]))
    d = [m - b for m, b in zip(model, base[best], strict=True)]
    return Paired(
        error=statistics.fmean(model),
        baseline=best,
        baseline_error=statistics.fmean(base[best]),
        diff=statistics.fmean(d),
        stderr=_stderr(d),
        windows=len(d),
        seeds=seeds,
    )


def _stderr(xs: Sequence[float]) -> float:
    return statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else math.nan


def one_sided_p(diff: float, stderr: float) -> float:
    """p-value of a one-sided paired z test of "the model is better" (H0: mean difference >= 0)."""
    if not _number(stderr) or stderr <= 0:
        return 0.0 if diff < 0 else 1.0
    return 0.5 * math.erfc(-(diff / stderr) / math.sqrt(2.0))


def holm(pvalues: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected at family-wise level `alpha`.

    Args:
        pvalues: one p-value per candidate.
        alpha: the family-wise error rate (1 - the configured level).
    """
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    rejected = [False] * len(pvalues)
    m = len(pvalues)
    for rank, i in enumerate(order):
        if pvalues[i] > alpha / (m - rank):
            break
        rejected[i] = True
    return rejected


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
