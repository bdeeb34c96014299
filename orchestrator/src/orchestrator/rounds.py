"""The kinds of round a phase runs (`rounds:` of configs/phases/phase<N>.yaml), one class each.

Every round names its `kind`; `KINDS` maps the name to the object that knows the kind. Nothing
else in the orchestrator switches on a kind: adding one touches this file only (write its class,
list it in `_KIND_CLASSES`).

A round has two names, for its two forms:
  RoundEntry  a phase file's round entry as written (the YAML models below, one per kind)
  RoundPlan   the round resolved for the tuner, as RUN_DIR/swarm.yaml keeps it
              (orchestrator.round_plan); the controller drives a RoundPlan whose `points` are
              the ones it runs, resolved at run time (carry, championship, promotion)
Their params are orchestrator.tuners.base's Params (ParamRange is a Param as the YAML gives it).

A kind has two sides.

From the YAML (settings_loader.load_settings, through `plans`):
  models                       the pydantic model(s) of its RoundEntry; `kind:` tells them apart
  design(entry)                the points the YAML alone fixes (a fixed design), else None
  plan(entry, space, design)   the RoundPlan written to RUN_DIR/swarm.yaml; `space` is the one
                               space every fixed design of the phase shares (one Optuna study)

At run time, from the RoundPlan (phases, vertex_plan, repair), the protocol proper:
  space(plan, points)              the params the tuner opens for the round
  points(plan, settings, winners)  the design the round runs, or None when the tuner suggests
                                   (`suggests` is True); `winners` are the previous round's winning
                                   params (or stand-ins in a dry run) that `carry` takes params from
  describe(plan, settings)         the round's line in the banner and --dry-run
  estimated_trials(plan, settings) its trials, for the cost estimate
  stops_early                      whether the phase's early-stopping rules apply to its trials
"""

from __future__ import annotations

import functools
import operator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from orchestrator.errors import ConfigError
from orchestrator.promotion import promotion_points
from orchestrator.round_plan import RoundPlan
from orchestrator.schema import Strict
from orchestrator.tuners.base import CategoricalParam, FloatParam, IntParam, Param
from orchestrator.values import Value, encode

if TYPE_CHECKING:
    from orchestrator.swarm_settings import SwarmSettings

# Phase 3's MSE-only arm: every prior weight 0 (with the championship's knobs, also 0).
MSE_ONLY = {"loss.gue_nll_weight": 0.0, "loss.gue_mmd_weight": 0.0, "loss.rg_penalty_weight": 0.0}

# How each backend searches a Bayesian round (orchestrator.tuners.optuna_study, orchestrator.tuners.vizier).
TUNER_NAMES = {
    "local": "Bayesian (Optuna TPE, constant liar)",
    "vertex": "Bayesian (Vertex AI Vizier, ALGORITHM_UNSPECIFIED)",
}


# -- the YAML entries ---------------------------------------------------------------------------
class ParamRange(Strict):
    """A Param as a phase file gives it (`space:` of a Bayesian or Latin-hypercube round, keyed by
    the trainer key): its range and scale. `param(name)` is the Param itself."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _range(self) -> ParamRange:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale param needs low > 0")
        return self

    def param(self, name: str) -> Param:
        if self.integer:
            return IntParam(name, int(self.low), int(self.high), self.log)
        return FloatParam(name, self.low, self.high, self.log)


class BayesianRound(Strict):
    name: str
    kind: Literal["bayesian"]
    space: dict[str, ParamRange]
    fixed: dict[str, Value] = {}

    @model_validator(mode="after")
    def _nonempty(self) -> BayesianRound:
        if not self.space:
            raise ValueError("space needs at least one param")
        return self


class PointsRound(Strict):
    """Explicit points, a grid over `values`, or a 2-level fractional factorial over `levels`."""

    name: str
    kind: Literal["points", "grid", "factorial"]
    points: list[dict[str, Value]] = []
    values: dict[str, list[Value]] = {}
    levels: dict[str, tuple[Value, Value]] = {}
    carry: list[str] = []  # knobs taken from the previous round's winner
    fixed: dict[str, Value] = {}

    @model_validator(mode="after")
    def _design(self) -> PointsRound:
        need = {"points": self.points, "grid": self.values, "factorial": self.levels}[self.kind]
        if not need:
            key = {"points": "points", "grid": "values", "factorial": "levels"}[self.kind]
            raise ValueError(f"kind {self.kind!r} needs a non-empty `{key}`")
        return self


class LatinHypercubeRound(Strict):
    name: str
    kind: Literal["lhs"]
    space: dict[str, ParamRange]
    runs: Annotated[int, Field(ge=2, le=1000)]
    carry: list[str] = []
    fixed: dict[str, Value] = {}


class ChampionshipRound(Strict):
    """Phase 3: the top configurations of an earlier phase, replicated over seeds, plus a control team."""

    name: str
    kind: Literal["championship"]
    source_phase: int = 2
    knobs: list[str]  # the knobs copied from the source trials
    top: Annotated[int, Field(ge=1)] = 10
    replicas: Annotated[int, Field(ge=1)] = 5
    control_team: Literal["fullbatch", "minibatch"] | None = "fullbatch"
    # The MSE-only arm: the champion's team with every prior weight 0, the same seeds and budget.
    mse_only: bool = True
    # One-sided paired z tests on the test windows, Holm-adjusted over the candidates at 1 - level.
    level: Annotated[float, Field(gt=0, lt=1)] = 0.95
    fixed: dict[str, Value] = {}


def points_space(points: list[dict[str, Any]]) -> list[Param]:
    """The params of a fixed design: strings are categorical; numbers span the design's own range."""
    space: dict[str, dict[str, Any]] = {}
    for point in points:
        for name, value in point.items():
            if isinstance(value, str):
                entry = space.setdefault(name, {"name": name, "type": "categorical", "choices": []})
                if value not in entry["choices"]:
                    entry["choices"].append(value)
            else:
                is_int = isinstance(value, int) and not isinstance(value, bool)
                entry = space.setdefault(
                    name,
                    {
                        "name": name,
                        "type": "int" if is_int else "float",
                        "low": value,
                        "high": value,
                        "log": False,
                    },
                )
                entry["low"], entry["high"] = min(entry["low"], value), max(entry["high"], value)
                if not is_int:
                    entry["type"] = "float"
    for entry in space.values():
        if entry["type"] != "categorical" and entry["low"] == entry["high"]:
            entry["high"] = entry["low"] + (1 if entry["type"] == "int" else max(abs(entry["low"]), 1e-12))
    for entry in space.values():
        if entry["type"] == "categorical":
            entry["choices"] = tuple(entry["choices"])
    return [_PARAMS[e.pop("type")](**e) for e in space.values()]


_PARAMS: dict[str, Any] = {"float": FloatParam, "int": IntParam, "categorical": CategoricalParam}


# -- the kinds ------------------------------------------------------------------------------------
class RoundKind:
    """The protocol every kind implements (see the module docstring)."""

    names: ClassVar[tuple[str, ...]]  # its `kind:` values
    models: ClassVar[tuple[type[Strict], ...]]  # its YAML entries
    suggests: ClassVar[bool] = False  # the tuner suggests the trials (points() is None)
    stops_early: ClassVar[bool] = True  # the phase's early-stopping rules apply to its trials

    def design(self, cfg: Any) -> list[dict[str, Any]] | None:
        return None

    def plan(self, cfg: Any, space: list[Param], design: list[dict[str, Any]] | None) -> RoundPlan:
        raise NotImplementedError

    def space(self, plan: RoundPlan, points: list[dict[str, Any]] | None) -> list[Param]:
        return plan.params()

    def points(
        self, plan: RoundPlan, settings: SwarmSettings, winners: list[dict[str, Any]]
    ) -> list[dict[str, Any]] | None:
        raise NotImplementedError

    def describe(self, plan: RoundPlan, settings: SwarmSettings) -> str:
        raise NotImplementedError

    def estimated_trials(self, plan: RoundPlan, settings: SwarmSettings) -> int:
        raise NotImplementedError


class Bayesian(RoundKind):
    """The backend's Bayesian tuner suggests every trial, up to the swarm's max_trials."""

    names = ("bayesian",)
    models = (BayesianRound,)
    suggests = True

    def plan(self, cfg: BayesianRound, space, design) -> RoundPlan:
        params = [r.param(n) for n, r in cfg.space.items()]
        return RoundPlan(name=cfg.name, kind=cfg.kind, space=params, points=None, fixed=cfg.fixed)

    def points(self, plan, settings, winners) -> None:
        return None

    def describe(self, plan, settings) -> str:
        ranges = ", ".join(
            f"{p.name} in [{p.low:g}, {p.high:g}]{' log' if p.log else ''}" for p in plan.space
        )
        tuner = TUNER_NAMES[settings.backend.name]
        return f"round {plan.name}: {tuner} over {ranges}; up to {settings.max_trials} trials"

    def estimated_trials(self, plan, settings) -> int:
        return settings.max_trials


class FixedDesign(RoundKind):
    """Explicit points, a grid, a fractional factorial or a Latin hypercube, known from the YAML;
    `carry` copies knobs from the previous round's winner into every point."""

    names = ("points", "grid", "factorial", "lhs")
    models = (PointsRound, LatinHypercubeRound)

    def design(self, cfg: PointsRound | LatinHypercubeRound) -> list[dict[str, Any]]:
        fixed = {k: encode(v) for k, v in cfg.fixed.items()}
        return [{**p, **fixed} for p in design_points(cfg, seed=0)]

    def plan(self, cfg: PointsRound | LatinHypercubeRound, space, design) -> RoundPlan:
        return RoundPlan(
            name=cfg.name, kind=cfg.kind, space=space, points=design, fixed=cfg.fixed, carry=cfg.carry
        )

    def points(self, plan, settings, winners) -> list[dict[str, Any]]:
        points = list(plan.points or [])
        if not plan.carry:
            return points
        return [{**p, **{k: w[k] for k in plan.carry if k in w}} for p in points for w in winners or [{}]]

    def describe(self, plan, settings) -> str:
        carry = f", carrying {', '.join(plan.carry)} from the previous winner" if plan.carry else ""
        return f"round {plan.name}: fixed design ({plan.kind}) of {len(plan.points or [])} points{carry}"

    def estimated_trials(self, plan, settings) -> int:
        return min(len(plan.points or []), settings.max_trials)


class Championship(RoundKind):
    """Phase 3: an earlier phase's top configurations x seeds, the control team, the MSE-only arm;
    the design is read at run time from the source phase's trials.json."""

    names = ("championship",)
    models = (ChampionshipRound,)

    def plan(self, cfg: ChampionshipRound, space, design) -> RoundPlan:
        return RoundPlan(name=cfg.name, kind=cfg.kind, space=[], points=[], fixed=cfg.fixed)

    def space(self, plan, points) -> list[Param]:
        return points_space(points or [])

    def points(self, plan, settings, winners) -> list[dict[str, Any]]:
        return championship_points(settings)

    def describe(self, plan, settings) -> str:
        c = settings.championship or {}
        return (
            f"round {plan.name}: top {c.get('top')} of {c.get('source_run_dir')} x {c.get('replicas')} seeds"
            + (f" + {c.get('control_team')} control" if c.get("control_team") else "")
            + (" + MSE-only arm (prior weights 0)" if c.get("mse_only", True) else "")
            + f"; judged on the test windows, Holm-adjusted at {c.get('level', 0.95):.0%}"
        )

    def estimated_trials(self, plan, settings) -> int:
        c = settings.championship or {}
        control = c.get("control_team") not in (None, settings.team)
        extra = int(control) + int(c.get("mse_only", True))
        return (c.get("top", 0) + extra) * c.get("replicas", 0)


class Promotion(RoundKind):
    """The playbook's full evaluation (orchestrator.playbook): the round before's top configurations
    x seeds on the long budget. No phase file names it: the playbook puts one after each round; the
    design is read at run time from the run directory (the round before's trials and their gates)."""

    names = ("promote",)
    models = ()
    stops_early = False  # the seeds measure the spread; stopping some would bias it

    def plan(self, cfg, space, design) -> RoundPlan:
        raise NotImplementedError("the playbook makes promote rounds (orchestrator.playbook.plans)")

    def points(self, plan, settings, winners) -> list[dict[str, Any]]:
        return promotion_points(settings, plan)

    def describe(self, plan, settings) -> str:
        p = settings.playbook or {}
        return (
            f"round {plan.name}: promote the top {p.get('top')} of the round before (gates first, then the "
            f"tune objective) to {p.get('full_epochs')} epochs x {p.get('seeds')} seeds, early stopping "
            "off; ranked by gates, then the paired test objective"
        )

    def estimated_trials(self, plan, settings) -> int:
        p = settings.playbook or {}
        return p.get("top", 0) * p.get("seeds", 0)


_KIND_CLASSES: tuple[type[RoundKind], ...] = (Bayesian, FixedDesign, Championship, Promotion)
KINDS: dict[str, RoundKind] = {name: cls() for cls in _KIND_CLASSES for name in cls.names}

# A phase file's round entry: one of the kinds' models, told apart by `kind:`.
RoundEntry = Annotated[
    functools.reduce(operator.or_, [m for cls in _KIND_CLASSES for m in cls.models]),
    Field(discriminator="kind"),
]


def kind_of(round_: RoundPlan | Any) -> RoundKind:
    """The kind of a RoundPlan or of a RoundEntry."""
    return KINDS[round_.kind]


def plans(cfgs: list[Any]) -> list[RoundPlan]:
    """A phase's RoundPlans from its YAML rounds. Fixed designs share one space (Optuna wants one
    distribution per knob in a study): the union of every design's points, fixed knobs folded in."""
    designs = {cfg.name: kind_of(cfg).design(cfg) for cfg in cfgs}
    space = points_space([p for d in designs.values() if d is not None for p in d])
    return [kind_of(cfg).plan(cfg, space, designs[cfg.name]) for cfg in cfgs]


def first_suggested(settings: SwarmSettings) -> RoundPlan | None:
    """The first round whose trials the tuner suggests (None: every round is a fixed design)."""
    return next((r for r in settings.rounds if kind_of(r).suggests), None)


def whole_study(settings: SwarmSettings) -> tuple[list[Param], list[dict[str, Any]] | None]:
    """(space, points) that open the whole study (every round) for `orchestrator stop` and repair:
    the Bayesian round's space, else an empty fixed design."""
    plan = first_suggested(settings)
    return (plan.params(), None) if plan else ([], [])


def design_points(rnd: PointsRound | LatinHypercubeRound, seed: int = 0) -> list[dict[str, Any]]:
    """The points of a fixed-design round (before carry and fixed knobs are added)."""
    from orchestrator import designs

    if isinstance(rnd, LatinHypercubeRound):
        params = [r.param(n) for n, r in rnd.space.items()]
        return designs.latin_hypercube(params, rnd.runs, seed=seed)
    if rnd.kind == "points":
        return [{k: encode(v) for k, v in p.items()} for p in rnd.points]
    if rnd.kind == "grid":
        return designs.grid({k: [encode(v) for v in vs] for k, vs in rnd.values.items()})
    return designs.fractional_factorial({k: (encode(a), encode(b)) for k, (a, b) in rnd.levels.items()})


def championship_settings(
    cfgs: list[Any], run_dir: Path, team: str, top: int | None, replicas: int | None
) -> dict[str, Any] | None:
    """SwarmSettings.championship of a phase with a championship round (None without one): where
    the source phase's trials are, and the design's size (`top`, `replicas`: the profile's, if it sets them)."""
    champ = next((r for r in cfgs if isinstance(r, ChampionshipRound)), None)
    if champ is None:
        return None
    return {
        "source_run_dir": str(run_dir.parent / f"phase{champ.source_phase}-{team}"),
        "knobs": champ.knobs,
        "top": top or champ.top,
        "replicas": replicas or champ.replicas,
        "control_team": champ.control_team,
        "mse_only": champ.mse_only,
        "level": champ.level,
    }


def championship_points(settings: SwarmSettings) -> list[dict[str, Any]]:
    """Phase 3's design: the source phase's top configurations x replicas, plus the control team.

    Raises:
        ConfigError: the source run has no trials.json or no completed trial.
    """
    from orchestrator.run_files import read_snapshot

    champ = settings.championship
    assert champ is not None
    source = Path(champ["source_run_dir"])
    try:
        snap = read_snapshot(source)
    except ConfigError as e:
        raise ConfigError(f"phase 3 needs phase 2's results: {e}") from e
    done = sorted(
        (t for t in snap["trials"] if t["state"] == "COMPLETED" and t.get("value") is not None),
        key=lambda t: t["value"],
    )
    configs: list[dict[str, Any]] = []
    for t in done:
        cfg = {k: t["params"][k] for k in champ["knobs"] if k in t["params"]}
        if len(cfg) == len(champ["knobs"]) and cfg not in configs:
            configs.append(cfg)
        if len(configs) == champ["top"]:
            break
    if not configs:
        raise ConfigError(f"{source / 'trials.json'}: no completed trial to promote; finish phase 2 first")
    mode = settings.team
    points = [
        {**cfg, "seed": seed, "train.mode": mode} for cfg in configs for seed in range(champ["replicas"])
    ]
    control = champ.get("control_team")
    if control and control != mode:
        points += [{**configs[0], "seed": seed, "train.mode": control} for seed in range(champ["replicas"])]
    if champ.get("mse_only", True):
        # Does the GUE prior help at all? The same team, seeds and budget with every prior weight 0.
        mse_only = {**{k: 0.0 for k in champ["knobs"]}, **MSE_ONLY}
        points += [{**mse_only, "seed": seed, "train.mode": mode} for seed in range(champ["replicas"])]
    return points
