"""The Tuner contract. Every backend (Optuna on SQLite, fixed designs, Vertex AI Vizier) passes
`tests/contracts/tuner.py` (the backends are listed in tests/contracts/backends.py).

A tuner owns the study: which trials exist, their parameters, and their outcome. It knows
nothing about jobs or processes; the controller joins tuner trials to runner jobs by trial id.

Contract (tests/contracts/tuner.py):
* `suggest(count)` creates up to `count` new ACTIVE trials and returns them. Their parameters
  are distinct from each other and from every trial still ACTIVE (Bayesian backends must account
  for running trials: constant liar / Vizier's own bookkeeping). It may return fewer (a fixed
  design that is used up returns []).
* A trial is created in the study's storage *before* `suggest` returns, so a controller that
  crashes right after suggesting finds the trial ACTIVE on restart and launches it then.
* `complete`, `infeasible`, `fail` and `stop` move an ACTIVE trial to its final state exactly once;
  calling one again on a trial already in that same final state is a no-op (crash-safe replays),
  on a trial in a different final state it raises ValueError.
* `trials()` returns every trial of the study (all pages), ordered by id.
* `remaining()` is how many more trials `suggest` can create: None for a tuner with no limit of its
  own (Bayesian: the round's max_trials decides), else a count that each suggestion lowers and
  that reaches 0 exactly when `suggest` starts returning [] (a fixed design).
* `report(trial_id, step, value)` records an intermediate objective (early stopping, curves).
* `annotate(trial_id, attrs)` attaches display attributes to an ACTIVE trial (optional).
* Reopening a tuner on the same study (same run dir / display name) sees the same trials.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal


class TunerState(str, enum.Enum):
    ACTIVE = "ACTIVE"  # suggested and not finished: the controller must have (or start) a job for it
    COMPLETED = "COMPLETED"  # objective measured
    INFEASIBLE = "INFEASIBLE"  # valid result, no objective (diverged)
    FAILED = "FAILED"  # gave up after retries (infrastructure or trainer failure)
    STOPPED = "STOPPED"  # stopped early (early-stopping rule or `orchestrator stop`)

    @property
    def finished(self) -> bool:
        return self is not TunerState.ACTIVE


# One tuned parameter (a trainer key) of a round's search space. `type` tells the three apart where they are stored
# (RUN_DIR/swarm.yaml); code tells them apart with isinstance.
@dataclass(frozen=True)
class FloatParam:
    name: str
    low: float
    high: float
    log: bool = False
    type: Literal["float"] = "float"


@dataclass(frozen=True)
class IntParam:
    name: str
    low: int
    high: int
    log: bool = False
    type: Literal["int"] = "int"


@dataclass(frozen=True)
class CategoricalParam:
    """Choices are strings; the swarm config maps them to trainer overrides (e.g. "2,3,5" -> primes)."""

    name: str
    choices: tuple[str, ...]
    type: Literal["categorical"] = "categorical"


Param = FloatParam | IntParam | CategoricalParam
SearchSpace = Sequence[Param]


@dataclass
class TunerTrial:
    id: str  # stable, unique within the study; digits only (Optuna number, Vizier uid)
    params: dict[str, float | int | str]
    state: TunerState
    value: float | None = None  # the objective (extrapolation_error) when COMPLETED or STOPPED
    metrics: dict[str, float] = field(default_factory=dict)  # other final metrics (stderr, baselines, skill)
    reason: str | None = None  # why INFEASIBLE / FAILED / STOPPED


class Tuner(abc.ABC):
    """One study. `objective` is minimised."""

    objective: str = "extrapolation_error"

    @abc.abstractmethod
    def suggest(self, count: int) -> list[TunerTrial]: ...

    def remaining(self) -> int | None:
        """Trials `suggest` can still create; None: no limit of its own (the default)."""
        return None

    @abc.abstractmethod
    def complete(self, trial_id: str, value: float, metrics: dict[str, float]) -> None: ...

    @abc.abstractmethod
    def infeasible(self, trial_id: str, reason: str) -> None: ...

    @abc.abstractmethod
    def fail(self, trial_id: str, reason: str) -> None: ...

    @abc.abstractmethod
    def stop(self, trial_id: str, reason: str, value: float | None = None) -> None: ...

    @abc.abstractmethod
    def report(self, trial_id: str, step: int, value: float) -> None: ...

    @abc.abstractmethod
    def trials(self) -> list[TunerTrial]: ...

    def annotate(self, trial_id: str, attrs: dict[str, str | float]) -> None:  # noqa: B027 (optional)
        """Attach display attributes (orchestrator.trial_attrs: baselines, the paired verdict, the
        output dir) to an ACTIVE trial; calling it again overwrites them. Backends whose study
        has no free per-trial attributes ignore them: the Vizier console shows the final
        measurement's metrics instead."""
