"""What the run files say: the headline against the baselines, per-run leaderboards, and for an
experiment the arms' statistics and the rg_penalty verdict. Pure functions of `report.load` records;
the page renderers only format what is computed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from orchestrator.report.load import BASELINES, Experiment, Loaded, Run, Trial, mean_baselines
from orchestrator.report.stats import Effect, MeanCI, Verdict, mean_ci, rg_verdict, welch
from orchestrator.trial_outputs import BEATS, WITHIN_NOISE, vs_baseline

NO_MODEL_BEATS = "No model beats the baselines"
BEATS_RULE = "objective + 2 stderr < the smallest baseline on the same windows"
DEFAULT_MARGIN_REL = 0.10
DEFAULT_LEVEL = 0.95


def fmt(x: float | None) -> str:
    """A number as the page prints it: 4 significant digits, '—' when absent."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.4g}"


def fmt_pm(value: float, stderr: float) -> str:
    return fmt(value) if math.isnan(stderr) else f"{fmt(value)} ± {fmt(stderr)}"


@dataclass
class Headline:
    n_trials: int
    n_completed: int
    best: tuple[Run, Trial] | None
    beating: list[tuple[Run, Trial]]
    text: str


@dataclass
class ArmSummary:
    run: Run
    objective: MeanCI | None  # over seeds (completed trials)
    gap: MeanCI | None  # objective - smallest baseline, paired per seed
    gap_stderr: float  # of the mean gap: seeds and windows combined (see _arm)
    baselines: dict[str, float]  # mean over seeds
    beats: bool | None  # None: fewer than 2 seeds
    within_noise: bool  # below the smallest baseline, by less than 2 gap_stderr


@dataclass
class ExperimentSummary:
    experiment: Experiment
    arms: list[ArmSummary]
    level: float
    verdict: Verdict | None
    verdict_text: str
    minibatch_effect: Effect | None  # Team 2 - Team 1 with rg
    baselines_text: str
    notes: list[str] = field(default_factory=list)


def headline(loaded: Loaded) -> Headline:
    """Does any completed trial beat the baselines? The page's first sentence."""
    done = [(r, t) for r in loaded.runs for t in r.completed]
    n_trials = sum(len(r.trials) for r in loaded.runs)
    if not done:
        text = (
            f"No trial has completed yet ({n_trials} trials in the run files), "
            "so there is nothing to compare with the baselines."
        )
        return Headline(n_trials, 0, None, [], text)
    run, best = min(done, key=lambda rt: rt[1].value)
    beating = [(r, t) for r, t in done if t.beats_baselines()]
    against = ", ".join(f"{name.removeprefix('baseline_')} {fmt(best.metric(name))}" for name in BASELINES)
    best_text = (
        f"the best trial (trial {best.id}, {run.label}) has extrapolation error "
        f"{fmt_pm(best.value, best.metric('extrapolation_stderr'))} against the baselines {against} on the same windows"
    )
    if not beating:
        text = f"{NO_MODEL_BEATS} ({BEATS_RULE}): {best_text}."
        close = sum(t.below_within_noise() for _, t in done)
        if close:
            text += (
                f" {close} trial{'s are' if close > 1 else ' is'} below the smallest baseline by less than "
                "2 stderr: within noise, not a win."
            )
    else:
        text = (
            f"{len(beating)} of {len(done)} completed trials beat the baselines ({BEATS_RULE}); {best_text}."
        )
    with_feature = sum(bool(((t.config or {}).get("model") or {}).get("explicit_feature")) for _, t in done)
    if with_feature:
        text += (
            f" {with_feature} of these {len(done)} models are given the explicit-formula estimate as an input "
            "(model.explicit_feature in config.yaml): an error near baseline_explicit means they learned "
            "nothing beyond it."
        )
    return Headline(n_trials, len(done), (run, best), beating, text)


def _arm(run: Run, level: float) -> ArmSummary:
    done = run.completed
    values = [t.value for t in done]
    baselines = mean_baselines(done)
    gaps = [t.value - t.best_baseline for t in done if not math.isnan(t.best_baseline)]
    gap = mean_ci(gaps, level) if gaps else None
    # Every seed is scored on the same W windows, so the seeds' spread says nothing about how those
    # windows were drawn; the windows' own standard error is added to it, as the per-trial rule does.
    window_se = [
        t.metric("extrapolation_stderr") for t in done if not math.isnan(t.metric("extrapolation_stderr"))
    ]
    window = math.fsum(window_se) / len(window_se) if window_se else 0.0
    if gap is None or gap.n < 2:
        return ArmSummary(
            run, mean_ci(values, level) if values else None, gap, math.nan, baselines, None, False
        )
    combined = math.hypot(gap.stderr, window)
    outcome = vs_baseline(gap.mean, combined, 0.0)  # the gap against a baseline of 0: the same rule
    return ArmSummary(
        run, mean_ci(values, level), gap, combined, baselines, outcome == BEATS, outcome == WITHIN_NOISE
    )


def _windows_note(trials: list[Trial]) -> str:
    """Which windows the seeds were scored on, from their config.yaml (empty when unknown or unequal)."""
    shapes = {
        (
            d.get("windows"),
            d.get("horizon"),
            d.get("window_start"),
            d.get("window_stride"),
            d.get("train_count"),
        )
        for d in (((t.config or {}).get("data") or {}) for t in trials)
    }
    if len(shapes) != 1:
        return ""
    windows, horizon, *_ = shapes.pop()
    if windows is None or horizon is None:
        return ""
    return (
        f" Every seed was scored on the same {windows} windows of {horizon} zeros, so the interval measures "
        "the spread over training seeds on these windows."
    )


def experiment_summary(exp: Experiment) -> ExperimentSummary:
    """Arms' statistics over seeds, the rg_penalty verdict and whether any arm beats the baselines.

    experiment.json may set `verdict: {margin_rel, level}`: the smallest effect that matters, as a
    fraction of the ablation arm's mean error (default 0.10), and the confidence level (default 0.95).
    """
    settings = exp.design.get("verdict") or {}
    level = float(settings.get("level", DEFAULT_LEVEL))
    margin_rel = float(settings.get("margin_rel", DEFAULT_MARGIN_REL))
    arms = [_arm(r, level) for r in exp.arms]
    by_role = {a.run.role: a for a in arms}
    with_rg, without_rg = by_role.get("rg"), by_role.get("no_rg")
    verdict = None
    if with_rg is None or without_rg is None:
        verdict_text = "No verdict: the experiment lacks a Team 1 arm with rg_penalty or its ablation."
    else:
        a = [t.value for t in with_rg.run.completed]
        b = [t.value for t in without_rg.run.completed]
        if len(a) < 2 or len(b) < 2:
            verdict_text = (
                f"No verdict yet: Welch's interval needs at least 2 completed seeds per arm; "
                f"with rg_penalty has {len(a)}, without has {len(b)}."
            )
        else:
            margin = margin_rel * math.fsum(b) / len(b)
            verdict = rg_verdict(a, b, margin, level)
            verdict_text = (
                f"{verdict.text} Effect = mean extrapolation_error with rg_penalty minus without "
                f"({len(a)} and {len(b)} seeds); margin = {margin_rel:g} x the ablation's mean error."
                + _windows_note([*with_rg.run.completed, *without_rg.run.completed])
            )
    minibatch = by_role.get("minibatch")
    minibatch_effect = None
    if minibatch is not None and with_rg is not None:
        a = [t.value for t in minibatch.run.completed]
        b = [t.value for t in with_rg.run.completed]
        if len(a) >= 2 and len(b) >= 2:
            minibatch_effect = welch(a, b, level)
    judged = [a for a in arms if a.beats is not None]
    winners = [a for a in judged if a.beats]
    close = [a.run.arm or a.run.label for a in judged if a.within_noise]
    rule = (
        "an arm beats them when its mean gap to the smallest baseline (paired per seed) plus 2 standard "
        "errors, of the seeds and of the W windows every seed is scored on, is below zero"
    )
    if not judged:
        baselines_text = "Whether an arm beats the baselines needs at least 2 completed seeds in an arm."
    elif not winners:
        baselines_text = f"{NO_MODEL_BEATS} ({rule})."
        if close:
            baselines_text += f" Below the smallest baseline, but within noise: {', '.join(close)}."
    else:
        names = ", ".join(a.run.arm or a.run.label for a in winners)
        baselines_text = f"Arms that beat the baselines ({rule}): {names}."
    notes = [
        f"{a.run.arm}: {len(a.run.completed)} of {len(a.run.trials)} seeds completed"
        for a in arms
        if len(a.run.completed) < len(a.run.trials) or not a.run.trials
    ]
    return ExperimentSummary(exp, arms, level, verdict, verdict_text, minibatch_effect, baselines_text, notes)


def state_counts(run: Run) -> str:
    """e.g. '5 COMPLETED, 1 INFEASIBLE' in a fixed order of states."""
    order = ("COMPLETED", "RUNNING", "PENDING", "INFEASIBLE", "STOPPED", "FAILED")
    counts = {s: sum(t.state == s for t in run.trials) for s in {t.state for t in run.trials}}
    parts = [f"{counts[s]} {s}" for s in order if counts.get(s)]
    parts += [f"{n} {s}" for s, n in sorted(counts.items()) if s not in order]
    return ", ".join(parts) if parts else "no trials"


def picks(loaded: Loaded, per_run_single: int = 3) -> list[tuple[str, Trial]]:
    """The trials whose spacings, block variances and curves are drawn: the best of each run, or
    the best `per_run_single` (default 3) when there is one run."""
    runs = [r for r in loaded.runs if r.completed]
    if len(runs) == 1:
        return [(runs[0].arm or f"#{i + 1}", t) for i, t in enumerate(runs[0].completed[:per_run_single])]
    return [(r.arm or r.label, r.completed[0]) for r in runs[:4]]


def params_text(params: dict) -> str:
    return ", ".join(f"{k}={fmt(v) if isinstance(v, float) else v}" for k, v in sorted(params.items()))
