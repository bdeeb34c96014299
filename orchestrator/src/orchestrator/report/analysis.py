"""What the run files say: the headline against the baselines, per-run leaderboards, phase 3's
championship and, for an experiment, the arms and the rg_penalty verdict. Pure functions of
`report.load` records; the page renderers only format what is computed here.

Final claims are made on the test windows (docs/contracts.md "Baselines and window sets"), which
nothing selects on: a trial or configuration is chosen by its objective on the tune windows, then
judged on the test windows, paired against the best baseline window by window, seeds averaged per
window first. Where several candidates are judged at once, one-sided paired z tests are
Holm-adjusted over them, and the page says how many there were.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from orchestrator.report.load import Experiment, Loaded, Run, Trial
from orchestrator.report.stats import Effect, Verdict, paired_effect, rg_verdict
from orchestrator.trial_outputs import (
    BEATS,
    TEST,
    WITHIN_NOISE,
    Paired,
    WindowMismatch,
    holm,
    one_sided_p,
    paired_difference,
    pooled_paired,
)

NO_MODEL_BEATS = "No model beats the baselines"
BEATS_RULE = (
    "the mean over the test windows of (model - best baseline), paired window by window, plus 2 "
    "paired standard errors is below 0; the best baseline is the smallest on the same windows"
)
DEFAULT_MARGIN_REL = 0.10
DEFAULT_LEVEL = 0.95
PRIOR_KNOBS = ("loss.gue_nll_weight", "loss.gue_mmd_weight", "loss.rg_penalty_weight")


def fmt(x: float | None) -> str:
    """A number as the page prints it: 4 significant digits, '—' when absent."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.4g}"


def fmt_pm(value: float, stderr: float, signed: bool = False) -> str:
    v = "—" if math.isnan(value) else (f"{value:+.4g}" if signed else fmt(value))
    return v if math.isnan(stderr) else f"{v} ± {fmt(stderr)}"


def fmt_paired(p: Paired | None) -> str:
    """'+0.0012 ± 0.0003 vs smoothed' (model - best baseline), or '—'."""
    if p is None:
        return "—"
    return f"{fmt_pm(p.diff, p.stderr, signed=True)} vs {p.baseline.removeprefix('baseline_')}"


def outcome_text(outcome: str | None) -> str:
    return {BEATS: "yes", WITHIN_NOISE: "within noise"}.get(outcome or "", "no" if outcome else "—")


def pooled(trials: Sequence[Trial], prefix: str = TEST) -> Paired | None:
    """Seeds of one configuration (or one trial) against the best baseline on one window set,
    each window's model error averaged over the seeds first (orchestrator.trial_outputs.pooled_paired)."""
    return pooled_paired([t.final or {} for t in trials], [t.windows(prefix) for t in trials], prefix)


@dataclass
class Judged:
    """Candidates judged at once on the test windows: the 2 s.e. rule per candidate, and one-sided
    paired z tests Holm-adjusted over all of them at family level 1 - level."""

    paired: list[Paired | None]
    holm_beats: list[bool]
    level: float

    @property
    def n(self) -> int:
        return sum(p is not None for p in self.paired)

    @property
    def n_holm(self) -> int:
        return sum(self.holm_beats)

    def text(self, noun: str) -> str:
        """e.g. '1 of 12 candidates beat ... (one-sided paired z tests, Holm-adjusted over the 12 at 5%)'."""
        return (
            f"{self.n_holm} of {self.n} {noun} beat the best baseline on the test windows by one-sided "
            f"paired z tests, Holm-adjusted over the {self.n} at family-wise level {1 - self.level:.0%}"
        )


def judge(paired: Sequence[Paired | None], level: float) -> Judged:
    tested = [i for i, p in enumerate(paired) if p is not None]
    rejected = holm([one_sided_p(paired[i].diff, paired[i].stderr) for i in tested], 1.0 - level)  # type: ignore[union-attr]
    beats = [False] * len(paired)
    for i, r in zip(tested, rejected, strict=True):
        beats[i] = r
    return Judged(list(paired), beats, level)


@dataclass
class Headline:
    n_trials: int
    n_completed: int
    best: tuple[Run, Trial] | None
    beating: list[tuple[Run, Trial]]  # by the 2 s.e. rule on the test windows
    judged: Judged | None
    text: str


def headline(loaded: Loaded, level: float = DEFAULT_LEVEL) -> Headline:
    """Does a model beat the baselines on the test windows? The page's first sentences.

    The best trial is chosen on the tune windows (its objective) and judged on the test windows.
    """
    done = [(r, t) for r in loaded.runs for t in r.completed]
    n_trials = sum(len(r.trials) for r in loaded.runs)
    if not done:
        text = (
            f"No trial has completed yet ({n_trials} trials in the run files), "
            "so there is nothing to compare with the baselines."
        )
        return Headline(n_trials, 0, None, [], None, text)
    run, best = min(done, key=lambda rt: rt[1].value)
    tests = [pooled([t]) for _, t in done]
    judged = judge(tests, level)
    beating = [(r, t) for (r, t), p in zip(done, tests, strict=True) if p is not None and p.outcome == BEATS]
    best_test = pooled([best])
    against = ", ".join(
        f"{k.removeprefix('baseline_')} {fmt(v)}"
        for k, v in sorted(best.baselines(TEST).items(), key=lambda kv: kv[1])
    )
    best_text = (
        f"the best trial by the objective (trial {best.id}, {run.label}) has extrapolation error "
        f"{fmt_pm(best.value, best.metric('extrapolation_stderr'))} on the tune windows and "
        f"{fmt_pm(best.metric('test_extrapolation_error'), best.metric('test_extrapolation_stderr'))} on the "
        f"test windows, against the baselines {against or '—'} there; model minus best baseline "
        f"{fmt_paired(best_test)} (paired)"
    )
    if not beating:
        text = f"{NO_MODEL_BEATS} on the test windows ({BEATS_RULE}): {best_text}."
        close = sum(p is not None and p.outcome == WITHIN_NOISE for p in tests)
        if close:
            text += (
                f" {close} trial{'s are' if close > 1 else ' is'} below the best baseline by less than "
                "2 paired s.e.: within noise, not a win."
            )
    else:
        text = (
            f"{len(beating)} of {len(done)} completed trials beat the baselines on the test windows "
            f"({BEATS_RULE}); {best_text}."
        )
    if judged.n:
        text += f" {judged.text('trials')}."
    return Headline(n_trials, len(done), (run, best), beating, judged, text)


# ------------------------------------------------------------------------------- phase 3


@dataclass
class Candidate:
    """One configuration of a phase-3 run, its seeds pooled."""

    label: str
    kind: str  # "promoted", "control" or "mse_only"
    params: dict
    trials: list[Trial]  # its completed seeds
    n_seeds: int  # all its trials
    tune: float  # mean objective over the seeds (what the ranking uses)
    test: Paired | None  # against the best baseline on the test windows
    holm_beats: bool = False


@dataclass
class Championship:
    run: Run
    candidates: list[Candidate]  # promoted by tune objective, then the control, then MSE-only
    champion: Candidate | None  # the promoted configuration with the best tune objective
    judged: Judged
    mse_only_effect: Effect | None  # MSE-only minus the champion, paired over the test windows
    lines: list[str]


def is_mse_only(params: dict) -> bool:
    """Every prior weight the trial sets is 0 (phase 3's MSE-only arm)."""
    set_ = [params[k] for k in PRIOR_KNOBS if k in params]
    return bool(set_) and all(isinstance(v, int | float) and v == 0 for v in set_)


def championship(run: Run) -> Championship:
    """Phase 3: each configuration's seeds averaged per test window and paired with the best
    baseline; how many beat it (Holm-adjusted over the candidates); the MSE-only arm against the
    champion.

    Args:
        run: a phase-3 run; `run.championship` holds swarm.yaml's settings (`level`, `control_team`).
    """
    settings = run.championship or {}
    level = float(settings.get("level", DEFAULT_LEVEL))
    groups: dict[str, list[Trial]] = {}
    for t in run.trials:
        key = repr(sorted((k, v) for k, v in t.params.items() if k != "seed"))
        groups.setdefault(key, []).append(t)
    candidates = []
    for members in groups.values():
        params = {k: v for k, v in members[0].params.items() if k != "seed"}
        done = [t for t in members if t.completed]
        if is_mse_only(params):
            kind = "mse_only"
        elif params.get("train.mode", run.team) != run.team:
            kind = "control"
        else:
            kind = "promoted"
        tune = statistics.fmean(t.value for t in done) if done else math.nan
        candidates.append(
            Candidate("", kind, params, done, len(members), tune, pooled(done) if done else None)
        )
    order = {"promoted": 0, "control": 1, "mse_only": 2}
    candidates.sort(key=lambda c: (order[c.kind], math.inf if math.isnan(c.tune) else c.tune))
    promoted = [c for c in candidates if c.kind == "promoted"]
    for i, c in enumerate(promoted, start=1):
        c.label = f"config {i}"
    for c in candidates:
        if c.kind == "control":
            c.label = f"control ({c.params.get('train.mode')})"
        elif c.kind == "mse_only":
            c.label = "MSE only"
    judged = judge([c.test for c in candidates], level)
    for c, beats in zip(candidates, judged.holm_beats, strict=True):
        c.holm_beats = beats
    champion = next((c for c in promoted if c.trials), None)
    mse = next((c for c in candidates if c.kind == "mse_only" and c.trials), None)
    effect = None
    lines = [
        f"Phase 3 ({run.label}): {len(promoted)} configuration(s) promoted from phase 2"
        + (", the control" if any(c.kind == "control" for c in candidates) else "")
        + (", the MSE-only arm" if any(c.kind == "mse_only" for c in candidates) else "")
        + f"; {len(candidates)} candidates, each seed-averaged per test window and paired with the best baseline."
    ]
    for c in candidates:
        lines.append(
            f"  {c.label:<20} seeds {len(c.trials)}/{c.n_seeds}  tune {fmt(c.tune)}  test "
            f"{fmt(c.test.error if c.test else math.nan)}  - best baseline {fmt_paired(c.test)}  "
            f"{outcome_text(c.test.outcome if c.test else None)}"
            + ("  (Holm: beats)" if c.holm_beats else "")
        )
    lines.append(f"{judged.text('candidates')}.")
    if champion is not None:
        lines.append(f"Champion (best tune objective): {champion.label} {_params_text(champion.params)}.")
    if champion is not None and mse is not None:
        try:
            d, se, n = paired_difference(
                [t.windows(TEST) or {} for t in mse.trials], [t.windows(TEST) or {} for t in champion.trials]
            )
        except WindowMismatch as e:
            lines.append(f"MSE only minus the champion: not pairable per test window ({e}).")
        else:
            if n >= 2:
                effect = paired_effect(d, se, n, level, len(mse.trials), len(champion.trials))
                lines.append(
                    f"MSE only minus the champion on the test windows: {effect.diff:+.4g} (paired over {n} "
                    f"windows, seeds averaged per window; {level:.0%} CI [{effect.lo:+.4g}, {effect.hi:+.4g}]): "
                    + (
                        "the GUE prior helps."
                        if effect.lo > 0
                        else "the GUE prior costs accuracy."
                        if effect.hi < 0
                        else "no measurable difference."
                    )
                )
    return Championship(run, candidates, champion, judged, effect, lines)


def _params_text(params: dict) -> str:
    return "(" + params_text(params) + ")" if params else ""


# ------------------------------------------------------------------------------- experiments


@dataclass
class ArmSummary:
    run: Run
    tune: float  # mean objective over the completed seeds
    test: Paired | None  # seeds averaged per test window, against the best baseline
    holm_beats: bool = False


@dataclass
class ExperimentSummary:
    experiment: Experiment
    arms: list[ArmSummary]
    level: float
    verdict: Verdict | None
    verdict_text: str
    minibatch_effect: Effect | None  # Team 2 - Team 1 with rg, paired over the test windows
    baselines_text: str
    notes: list[str] = field(default_factory=list)


def _arm(run: Run) -> ArmSummary:
    done = run.completed
    tune = statistics.fmean(t.value for t in done) if done else math.nan
    return ArmSummary(run, tune, pooled(done) if done else None)


def _effect(a: ArmSummary, b: ArmSummary, level: float) -> Effect | str:
    """a - b, paired over the test windows with each arm's seeds averaged per window; or why not."""
    ta, tb = a.run.completed, b.run.completed
    if not ta or not tb:
        return f"{a.run.arm} has {len(ta)} completed seed(s), {b.run.arm} has {len(tb)}"
    try:
        d, se, n = paired_difference([t.windows(TEST) or {} for t in ta], [t.windows(TEST) or {} for t in tb])
    except WindowMismatch as e:
        return f"{a.run.arm} and {b.run.arm} cannot be paired per test window: {e}"
    if n < 2:
        return f"only {n} test window"
    return paired_effect(d, se, n, level, len(ta), len(tb))


def experiment_summary(exp: Experiment) -> ExperimentSummary:
    """Arms on the test windows, the rg_penalty verdict and whether any arm beats the baselines.

    experiment.json may set `verdict: {margin_rel, level}`: the smallest effect that matters, as a
    fraction of the ablation arm's mean test error (default 0.10), and the confidence level
    (default 0.95), also the Holm family level of the arms against the best baseline.
    """
    settings = exp.design.get("verdict") or {}
    level = float(settings.get("level", DEFAULT_LEVEL))
    margin_rel = float(settings.get("margin_rel", DEFAULT_MARGIN_REL))
    arms = [_arm(r) for r in exp.arms]
    judged = judge([a.test for a in arms], level)
    for a, beats in zip(arms, judged.holm_beats, strict=True):
        a.holm_beats = beats
    by_role = {a.run.role: a for a in arms}
    with_rg, without_rg = by_role.get("rg"), by_role.get("no_rg")
    verdict = None
    if with_rg is None or without_rg is None:
        verdict_text = "No verdict: the experiment lacks a Team 1 arm with rg_penalty or its ablation."
    else:
        eff = _effect(with_rg, without_rg, level)
        if isinstance(eff, str):
            verdict_text = f"No verdict yet: {eff}."
        else:
            margin = margin_rel * without_rg.test.error if without_rg.test else math.nan
            verdict = rg_verdict(eff, margin)
            verdict_text = (
                f"{verdict.text} Effect = mean test-window extrapolation_error with rg_penalty minus without, "
                f"each arm's {eff.seeds_a} and {eff.seeds_b} seeds averaged per window first; margin = "
                f"{margin_rel:g} x the ablation's mean test error. The interval is over the {eff.windows} "
                "test windows: an effect of a seed that shifts every window alike is not in it."
            )
    minibatch = by_role.get("minibatch")
    minibatch_effect = None
    if minibatch is not None and with_rg is not None:
        eff = _effect(minibatch, with_rg, level)
        minibatch_effect = None if isinstance(eff, str) else eff
    winners = [a for a in arms if a.test is not None and a.test.outcome == BEATS]
    close = [a.run.arm or a.run.label for a in arms if a.test is not None and a.test.outcome == WITHIN_NOISE]
    rule = (
        "an arm beats them when its test-window error, seeds averaged per window, minus the best "
        "baseline on each window, plus 2 paired standard errors, is below zero"
    )
    if not judged.n:
        baselines_text = "Whether an arm beats the baselines needs a completed seed with test-window errors."
    elif not winners:
        baselines_text = f"{NO_MODEL_BEATS} ({rule})."
        if close:
            baselines_text += f" Below the best baseline, but within noise: {', '.join(close)}."
    else:
        names = ", ".join(a.run.arm or a.run.label for a in winners)
        baselines_text = f"Arms that beat the baselines ({rule}): {names}."
    if judged.n:
        baselines_text += f" {judged.text('arms')}."
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
