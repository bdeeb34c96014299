"""The parallel-runs playbook as a phase (`orchestrator swarm --phase playbook`,
configs/phases/playbook.yaml): tiered rounds at fixed compute, promotion to a full evaluation,
ranking by task + gates + cost, and the guardrails of the file's schema.

Each round of the file is a small evaluation: its design (grid, 2-level fractional factorial, Latin
hypercube or explicit points) on the profile's short budget, judged on the tune windows, early
stopping by the paired baseline rule of the controller (orchestrator.controller). Its top k
configurations (gates first, then the tune objective) are promoted to a full evaluation, a
`promote` round of k x seeds trials on the long budget (`train.epochs` and `seed` become trial
parameters), with early stopping off: the seeds measure the spread and stopping some would bias it.
The next round fixes the previous full evaluation's winner (every knob of every earlier round,
through phase 1's `carry`): the configuration that passes the gates with the smallest mean tune
objective over its seeds. Selection never reads the test windows' errors; the final ranking does
(the claim), and the gates, which are pass/fail physics checks with thresholds fixed in the file.

Ranking: a configuration that fails a gate (with any seed) ranks below every one that passes; then
by the task, the paired test-window difference to the best baseline (seeds averaged per window).
Cost is shown beside them: seconds per step and CPU- or GPU-hours from final.json's `cost`.

RUN_DIR/playbook.json records the trials of each finished round, so the report tells the rounds
apart (a trial whose point two rounds share belongs to both); it is derived from the study.
The ranking itself is orchestrator.report.playbook_rank; the page is orchestrator.report.playbook.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from orchestrator.early_stopping import EarlyStopping
from orchestrator.promotion import FULL
from orchestrator.report.playbook_rank import EPOCHS, SEED, group_configs, winner_config
from orchestrator.round_plan import RoundPlan
from orchestrator.rounds import LatinHypercubeRound, PointsRound, design_points
from orchestrator.schema import Strict as _Strict
from orchestrator.tuners.base import IntParam
from orchestrator.values import Value, encode

PLAYBOOK = "playbook"
PROMOTE = "promote"  # the kind of a full-evaluation round (orchestrator.rounds.Promotion)


# -- the file's schema ------------------------------------------------------------------------
class Gates(_Strict):
    """Thresholds of the physics gates (final.json `gates`, test windows' 100-step rollouts):
    a trial passes when every statistic is at most its threshold."""

    spacing_ks: Annotated[float, Field(gt=0, le=1)]
    block_variance_logratio: Annotated[float, Field(gt=0)]
    nonpositive_fraction: Annotated[float, Field(ge=0, le=1)]


class FullEvaluation(_Strict):
    """`promotion:` of the file, the full evaluation: the top `top` of each round, `seeds` seeds each, `epochs` epochs.
    The profile's `top`, `replicas` and `full_epochs` replace these."""

    top: Annotated[int, Field(ge=1, le=10)] = 2
    seeds: Annotated[int, Field(ge=1, le=20)] = 2
    epochs: Annotated[int, Field(ge=1)]


class NotTogether(_Strict):
    """A round may not vary a knob of `knobs` together with a knob of `with`."""

    knobs: Annotated[list[str], Field(min_length=1)]
    with_: Annotated[list[str], Field(min_length=1, alias="with")]
    why: str


class Guardrails(_Strict):
    """What the playbook forbids a round: to vary a knob of a `not_together` entry's `knobs` with
    one of its `with`; to change nodes per step (any `nodes_per_step` knob) without varying
    `lr_knob` too, unless the round says why in `lr_not_refit`; to change a `memory` knob without
    saying how it compensates (`memory`)."""

    not_together: list[NotTogether] = []
    nodes_per_step: list[str] = ["data.train_count", "train.num_clusters", "train.clusters_per_step"]
    lr_knob: str = "optim.lr"
    memory: list[str] = []


class _Notes(BaseModel):
    title: str = ""
    # Why a round that changes nodes per step keeps the learning rate (guardrails.nodes_per_step).
    lr_not_refit: str | None = None
    # How a round that changes memory compensates (guardrails.memory).
    memory: str | None = None


class PlaybookPointsRound(PointsRound, _Notes):
    pass


class PlaybookLhsRound(LatinHypercubeRound, _Notes):
    pass


PlaybookRound = Annotated[PlaybookPointsRound | PlaybookLhsRound, Field(discriminator="kind")]


class PlaybookPhase(_Strict):
    """configs/phases/playbook.yaml. Read by orchestrator.settings_loader.load_settings like a phase file."""

    phase: Literal["playbook"]
    title: str
    description: str = ""
    fixed: dict[str, Value] = {}
    rounds: Annotated[list[PlaybookRound], Field(min_length=1)]
    promotion: FullEvaluation
    gates: Gates
    guardrails: Guardrails = Guardrails()
    max_trials: Annotated[int, Field(ge=1)] | None = None
    parallel: Annotated[int, Field(ge=1)] | None = None
    max_retries: Annotated[int, Field(ge=0, le=10)] = 2
    max_failed_trials: Annotated[int, Field(ge=1)] = 10
    early_stopping: EarlyStopping = EarlyStopping()

    # What load_settings reads of a numbered phase and a playbook does not have.
    @property
    def lock(self) -> None:
        return None

    @property
    def writes_lock(self) -> list[str]:
        return []


# -- guardrails -------------------------------------------------------------------------------
def _static_points(rnd: PointsRound | LatinHypercubeRound) -> list[dict[str, Any]]:
    fixed = {k: encode(v) for k, v in rnd.fixed.items()}
    return [{**p, **fixed} for p in design_points(rnd, seed=0)]


def varied(rnd: PointsRound | LatinHypercubeRound) -> list[str]:
    """The knobs a round's design gives two or more values."""
    values: dict[str, set] = {}
    for p in design_points(rnd, seed=0):
        for k, v in p.items():
            values.setdefault(k, set()).add(json.dumps(encode(v)))
    return [k for k, vs in values.items() if len(vs) > 1]


def guardrail_problems(cfg: PlaybookPhase) -> list[tuple[tuple, str]]:
    """Every round that breaks a guardrail of the file, as (location in the file, message)."""
    out: list[tuple[tuple, str]] = []
    g = cfg.guardrails
    for i, rnd in enumerate(cfg.rounds):
        where = ("rounds", i)
        if rnd.carry:
            out.append(
                (
                    (*where, "carry"),
                    "the playbook carries every knob of the earlier rounds itself; remove `carry`",
                )
            )
        own = {k for p in _static_points(rnd) for k in p}
        taken = sorted(own & {SEED, EPOCHS})
        if taken:
            out.append(
                (where, f"round {rnd.name} sets {', '.join(taken)}, which the promotion sets; remove it")
            )
        moved = varied(rnd)
        changed = set(moved) | set(rnd.fixed)
        for group in g.not_together:
            a = [k for k in group.knobs if k in moved]
            b = [k for k in group.with_ if k in moved and k not in a]
            if a and b:
                out.append(
                    (
                        where,
                        f"round {rnd.name} varies {', '.join(a)} together with {', '.join(b)}, which "
                        f"guardrails.not_together forbids ({group.why})",
                    )
                )
        nodes = sorted(changed & set(g.nodes_per_step))
        if nodes and g.lr_knob not in moved and not rnd.lr_not_refit:
            out.append(
                (
                    where,
                    f"round {rnd.name} changes nodes per step ({', '.join(nodes)}) without varying {g.lr_knob}; "
                    f"vary it too or say why not in `lr_not_refit`",
                )
            )
        mem = sorted(changed & set(g.memory))
        if mem and not rnd.memory:
            out.append(
                (
                    where,
                    f"round {rnd.name} changes memory ({', '.join(mem)}); say how it compensates in `memory`",
                )
            )
    return out


# -- settings ---------------------------------------------------------------------------------
def plans(small: list[RoundPlan], seeds: int, full_epochs: int) -> list[RoundPlan]:
    """The small rounds (orchestrator.rounds.plans) with a promote round after each, every small
    round carrying every knob of the rounds before it; the study's space gains `seed` and `train.epochs`."""
    space = [
        *small[0].space,
        IntParam(SEED, 0, max(1, seeds - 1)),
        IntParam(EPOCHS, full_epochs, full_epochs + 1),
    ]
    out: list[RoundPlan] = []
    before: list[str] = []
    for plan in small:
        own = {k for p in plan.points or [] for k in p}
        carry = [k for k in before if k not in own]
        out.append(plan.model_copy(update={"space": space, "carry": carry}))
        out.append(RoundPlan(name=plan.name + FULL, kind=PROMOTE, space=space, points=[], fixed={}))
        before += [k for k in sorted(own) if k not in before]
    return out


def settings_block(cfg: PlaybookPhase, top: int | None, seeds: int | None, full_epochs: int | None) -> dict:
    """SwarmSettings.playbook: what the run needs beyond the rounds."""
    return {
        "top": top or cfg.promotion.top,
        "seeds": seeds or cfg.promotion.seeds,
        "full_epochs": full_epochs or cfg.promotion.epochs,
        "gates": cfg.gates.model_dump(),
        "titles": {r.name: r.title for r in cfg.rounds},
    }


# -- promotion and the carried winner ---------------------------------------------------------
def carried_winner(settings, previous: Sequence) -> dict[str, Any] | None:
    """What the round after a full evaluation carries: the configuration that passes every gate with
    all its seeds and has the smallest mean tune objective; None after any other round (the
    phases' single best trial then) or when no trial completed."""
    if settings.playbook is None or not previous or EPOCHS not in previous[0].params:
        return None
    done = [(t.id, t.params, t.value, t.metrics) for t in previous if _completed(t)]
    best = winner_config(group_configs("-", done, settings.playbook["gates"]))
    return best.params if best else None


def _completed(t: Any) -> bool:
    """A TunerTrial that completed with a value (its state's name, so no tuner import is needed)."""
    return getattr(t.state, "value", t.state) == "COMPLETED" and t.value is not None
