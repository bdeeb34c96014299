"""The models of the config files that say what a swarm runs, beside the teams (orchestrator.teams),
the backends (orchestrator.swarm_settings, orchestrator.vertex_settings) and the early-stopping
rules (orchestrator.early_stopping):

  configs/phases/phase<N>.yaml     rounds, fixed overrides, lock, early stopping, retries
  configs/profiles/<profile>.yaml  trial size and counts per phase (default, smoke, cloud)
  configs/budgets.yaml             GPU-hour cap per phase, machine prices

All keys are checked; unknown keys are errors. A phase's round entries are the round kinds' models
(orchestrator.rounds); the playbook's phase file has its own model (orchestrator.playbook).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from orchestrator.early_stopping import EarlyStopping
from orchestrator.paths import PLAYBOOK
from orchestrator.rounds import RoundEntry
from orchestrator.schema import Strict
from orchestrator.values import Value

PHASES = (1, 2, 3, PLAYBOOK)
PhaseKey = Literal[1, 2, 3, "playbook"]


# -- phases -----------------------------------------------------------------------------------
class LockSpec(Strict):
    """Where a phase takes the locked architecture from (phase 1's lock.yaml) and what to use without it."""

    from_phase: int = 1
    keys: list[str]
    defaults: dict[str, Value]

    @model_validator(mode="after")
    def _defaults_cover_keys(self) -> LockSpec:
        missing = [k for k in self.keys if k not in self.defaults]
        if missing:
            raise ValueError(f"defaults must give every locked key; missing {missing}")
        return self


class Phase(Strict):
    """configs/phases/phase<N>.yaml"""

    phase: Literal[1, 2, 3]
    title: str
    description: str = ""
    rounds: Annotated[list[RoundEntry], Field(min_length=1)]
    fixed: dict[str, Value] = {}
    lock: LockSpec | None = None
    writes_lock: list[str] = []
    max_trials: Annotated[int, Field(ge=1)] | None = None
    parallel: Annotated[int, Field(ge=1)] | None = None
    max_retries: Annotated[int, Field(ge=0, le=10)] = 2
    max_failed_trials: Annotated[int, Field(ge=1)] = 10
    early_stopping: EarlyStopping = EarlyStopping()


# -- profiles ---------------------------------------------------------------------------------
class PhaseProfile(Strict):
    epochs: Annotated[int, Field(ge=1)]
    max_trials: Annotated[int, Field(ge=1)] | None = None
    parallel: Annotated[int, Field(ge=1)] | None = None
    top: Annotated[int, Field(ge=1)] | None = None  # phase 3: configurations promoted
    replicas: Annotated[int, Field(ge=1)] | None = None  # phase 3, playbook: seeds per configuration
    full_epochs: Annotated[int, Field(ge=1)] | None = None  # playbook: epochs of the full evaluation
    trial_hours_estimate: Annotated[float, Field(gt=0)] = 0.1  # for the cost estimate before any trial ends
    overrides: dict[str, Value] = {}
    early_stopping: EarlyStopping | None = None  # replaces the phase's rules for this profile


class Profile(Strict):
    """configs/profiles/<profile>.yaml"""

    name: str
    description: str = ""
    trainer_config: str | None = None  # relative to the profile file; replaces the team's config
    # A local path relative to the repository root, or gs://bucket/prefix; $ZETA_SWARM_DATA overrides it.
    data_path: str = "data/odlyzko"
    overrides: dict[str, Value] = {}
    # Per team, applied after `overrides` to that team's trials (e.g. rg_penalty off for minibatch
    # when the base config is a full-batch one).
    team_overrides: dict[Literal["fullbatch", "minibatch"], dict[str, Value]] = {}
    # A full-batch epoch is one optimizer step, a mini-batch epoch num_clusters / clusters_per_step
    # steps: a team's trials run `epochs x epoch_scale[team]` epochs, so teams compare at equal steps.
    epoch_scale: dict[Literal["fullbatch", "minibatch"], Annotated[int, Field(ge=1, le=1000)]] = {}
    phases: dict[PhaseKey, PhaseProfile]


# -- budgets ----------------------------------------------------------------------------------
class Budgets(Strict):
    """configs/budgets.yaml"""

    currency: str = "USD"
    prices_per_hour: dict[str, Annotated[float, Field(ge=0)]]  # machine type -> price of machine + GPUs
    gpu_hour_caps: dict[PhaseKey, Annotated[float, Field(gt=0)]]
