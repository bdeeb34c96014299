"""The playbook's ranking (orchestrator.playbook): the physics gates of a trial's final.json, the
configurations of a full evaluation (seeds pooled), their rank by gates, then task, with cost
beside them, and the best multi-step-trained configuration against the best one-step-trained one.

Pure functions of final.json objects; imported by the playbook phase (promotion, the carried
winner) and by the report's playbook page, so it imports neither the settings nor the report's loader.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.report.stats import paired_effect
from orchestrator.trial_outputs import (
    GATE_PREFIX,
    TEST,
    TUNE,
    Paired,
    WindowMismatch,
    paired_difference,
    pooled_paired,
)

SEED, EPOCHS, HORIZON = "seed", "train.epochs", "train.max_horizon"
GATES = ("spacing_ks", "block_variance_logratio", "nonpositive_fraction")


def gate_values(final: dict | None) -> dict[str, float | None]:
    """The gates of a final.json (`gates`), or of a trial's stored metrics (`gate_<name>`)."""
    final = final or {}
    raw = final.get("gates")
    if not isinstance(raw, dict):
        raw = {k.removeprefix(GATE_PREFIX): v for k, v in final.items() if k.startswith(GATE_PREFIX)}
    return {g: float(v) if _number(v := raw.get(g)) else None for g in GATES}


def failed_gates(final: dict | None, gates: dict[str, float]) -> list[str]:
    """The gates a trial fails; a gate that final.json does not report counts as failed."""
    values = gate_values(final)
    return [g for g in GATES if values[g] is None or values[g] > gates[g]]


def config_of(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's configuration: its params without the seed and the budget."""
    return {k: v for k, v in params.items() if k not in (SEED, EPOCHS)}


def _key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


@dataclass
class Config:
    """One configuration of a full evaluation: its seeds' trials and what they measured."""

    round: str
    params: dict[str, Any]
    trials: list[str]
    finals: list[dict]
    gates: dict[str, float]
    tune_values: list[float] = field(default_factory=list)
    seeds: list[Any] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        """Gates that any seed fails."""
        return [g for g in GATES if any(g in failed_gates(f, self.gates) for f in self.finals)]

    @property
    def tune(self) -> float:
        return statistics.fmean(self.tune_values) if self.tune_values else math.nan

    def worst(self, gate: str) -> float | None:
        vals = [v for f in self.finals if (v := gate_values(f)[gate]) is not None]
        return max(vals) if vals else None

    def task(self) -> Paired | None:
        """The paired test-window difference to the best baseline, seeds averaged per window."""
        return _pooled(self.finals, TEST)

    def cost(self) -> dict[str, float]:
        """Mean seconds per step, and CPU- and GPU-hours of the seeds together."""
        costs = [c for f in self.finals if isinstance(c := f.get("cost"), dict)]
        sps = [float(c["seconds_per_step"]) for c in costs if _number(c.get("seconds_per_step"))]
        cpu = [float(c["cpu_seconds"]) for c in costs if _number(c.get("cpu_seconds"))]
        gpu = [
            float(c["train_seconds"])
            for c in costs
            if _number(c.get("train_seconds")) and str(c.get("device", "")).startswith("cuda")
        ]
        return {
            "seconds_per_step": statistics.fmean(sps) if sps else math.nan,
            "cpu_hours": sum(cpu) / 3600 if cpu else math.nan,
            "gpu_hours": sum(gpu) / 3600,
        }

    @property
    def horizon(self) -> int:
        return int(self.params.get(HORIZON, 1))


def _pooled(finals: Sequence[dict], prefix: str) -> Paired | None:
    sets = [(f.get("windows") or {}).get({TUNE: "tune", TEST: "test"}[prefix]) for f in finals]
    try:
        return pooled_paired(list(finals), sets, prefix)
    except WindowMismatch:
        return None


def group_configs(
    round_name: str, trials: Sequence[tuple[str, dict, float | None, dict | None]], gates: dict[str, float]
) -> list[Config]:
    """Completed full-evaluation trials (id, params, tune value, final.json) grouped by configuration."""
    groups: dict[str, Config] = {}
    for tid, params, value, final in trials:
        if final is None or value is None:
            continue
        cfg = config_of(params)
        c = groups.setdefault(_key(cfg), Config(round_name, cfg, [], [], gates))
        c.trials.append(tid)
        c.finals.append(final)
        c.tune_values.append(float(value))
        c.seeds.append(params.get(SEED))
    return list(groups.values())


def winner_config(configs: Sequence[Config]) -> Config | None:
    """The configuration carried forward: passes every gate, then the smallest mean tune objective."""
    return min(configs, key=lambda c: (bool(c.failed), c.tune), default=None)


def rank(configs: Sequence[Config]) -> list[Config]:
    """Gates first (a configuration failing any gate ranks below every one that passes), then the
    task (paired test difference to the best baseline; lower is better)."""

    def key(c: Config):
        task = c.task()
        return (bool(c.failed), task.diff if task is not None else math.inf, c.tune)

    return sorted(configs, key=key)


@dataclass
class HorizonComparison:
    multi: Config
    one: Config
    diff: float  # multi - one, mean over the test windows (each seed-averaged)
    stderr: float
    windows: int
    lo: float
    hi: float
    per_seed: dict[Any, float] = field(default_factory=dict)  # seed -> multi - one, that seed alone

    @property
    def seeds_disagree(self) -> bool:
        return len({d > 0 for d in self.per_seed.values()}) > 1

    @property
    def within_noise(self) -> bool:
        """The interval (window noise only) contains 0, or the seeds differ in sign (seed noise)."""
        return self.lo <= 0 <= self.hi or self.seeds_disagree

    def text(self) -> str:
        if self.lo <= 0 <= self.hi:
            verdict = "within noise (the 95% interval contains 0)"
        elif self.seeds_disagree:
            verdict = "not established: the interval covers window noise only and the seeds disagree in sign"
        else:
            verdict = "multi-step better" if self.hi < 0 else "one-step better"
        seeds = ", ".join(f"seed {k}: {v:+.3g}" for k, v in self.per_seed.items())
        return (
            f"best multi-step (max_horizon {self.multi.horizon}, {self.multi.round}, trials "
            f"{','.join(self.multi.trials)}) minus best one-step ({self.one.round}, trials "
            f"{','.join(self.one.trials)}) on the test windows: {self.diff:+.4g} ± {self.stderr:.2g} "
            f"(paired over {self.windows} windows, {len(self.multi.finals)} + {len(self.one.finals)} seeds "
            f"averaged per window; 95% CI [{self.lo:+.4g}, {self.hi:+.4g}]"
            + (f"; seed by seed {seeds}" if seeds else "")
            + f"): {verdict}; each side "
            "chosen on the tune windows (gates, then the mean objective)"
        )


def horizon_comparison(configs: Sequence[Config]) -> HorizonComparison | None:
    """The best multi-step-trained configuration against the best one-step-trained one (max_horizon
    1), each chosen as the carried winner is (gates, then the mean tune objective: the test windows
    select nothing), then paired over the test windows; None when either is missing."""
    multi = winner_config([c for c in configs if c.horizon > 1])
    one = winner_config([c for c in configs if c.horizon == 1])
    if multi is None or one is None:
        return None
    a = [f["windows"]["test"] for f in multi.finals]
    b = [f["windows"]["test"] for f in one.finals]
    try:
        diff, se, n = paired_difference(a, b)
    except (WindowMismatch, KeyError, TypeError):
        return None
    if n < 2:
        return None
    eff = paired_effect(diff, se, n)
    per_seed = {}
    for seed, fa in zip(multi.seeds, multi.finals, strict=True):
        if seed is not None and seed in one.seeds:
            fb = one.finals[one.seeds.index(seed)]
            per_seed[seed] = paired_difference([fa["windows"]["test"]], [fb["windows"]["test"]])[0]
    return HorizonComparison(multi, one, diff, se, n, eff.lo, eff.hi, dict(sorted(per_seed.items())))


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
