"""The settings of one swarm run (RUN_DIR/swarm.yaml): what orchestrator.settings_loader resolves
from the config files and every part of a run reads. The backend entry is configs/backends/local.yaml's
model itself (the vertex backend's file is validated by orchestrator.vertex_settings)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from orchestrator.early_stopping import EarlyStopping
from orchestrator.round_plan import RoundPlan
from orchestrator.schema import Strict
from orchestrator.values import Value


# -- backends ---------------------------------------------------------------------------------
class LocalBackend(Strict):
    """configs/backends/local.yaml"""

    name: Literal["local"] = "local"
    parallel: Annotated[int, Field(ge=1, le=256)] = 2
    grace_s: Annotated[float, Field(gt=0)] = 30.0
    poll_s: Annotated[float, Field(gt=0)] = 2.0
    env: dict[str, str] = {}


class VertexBackendRef(Strict):
    """The vertex backend's own file is validated by orchestrator.vertex_settings; here only its name."""

    name: Literal["vertex"] = "vertex"
    parallel: int = 50
    grace_s: float = 30.0
    poll_s: float = 30.0
    env: dict[str, str] = {}


# -- the resolved settings ----------------------------------------------------------------------
class TeamMachine(Strict):
    """What a team's trials run on and with (SwarmSettings.team_machines)."""

    machine: str  # "<machine type> + <n> x <accelerator>"
    accelerator_count: int
    price_per_hour: float  # of the machine and its accelerators; nan without a price
    trainer_config: str
    overrides: dict[str, Value]  # the `team` layer: the profile's team_overrides, train.mode, train.epochs


class SwarmSettings(Strict):
    """Everything one swarm run needs, written to RUN_DIR/swarm.yaml."""

    phase: int | str  # 1, 2, 3 or "playbook"
    team: str
    backend: LocalBackend | VertexBackendRef
    backend_file: str
    infra_outputs: str | None = None
    infra_overrides: dict[str, str] = {}  # infra setting -> value from a flag (--runs-bucket, ...)
    profile: str
    parallel: int
    max_trials: int
    run_dir: str
    study: str
    # RUN_DIR/run.json's id; "" for a run dir from before run ids. Every cloud name carries it.
    run_id: str = ""
    # vertex: every trial's per-epoch curve and result in Vertex AI Experiments (--experiments)
    experiments: bool = False
    seed: int = 0
    trainer_config: str
    data_path: str
    epochs: int  # of this team's trials (a phase-3 control team has its own in team_machines)
    # The swarm-wide layers of trial_command.PRECEDENCE (profile, profile_phase, phase_fixed, lock),
    # and `overrides`, their merge: the fixed `--set` overrides of every trial.
    override_layers: dict[str, dict[str, Value]]
    overrides: dict[str, Value]
    rounds: list[RoundPlan]
    lock_source: str  # where the locked architecture came from (a lock file or "defaults")
    lock_values: dict[str, Value]
    writes_lock: list[str]
    max_retries: int
    max_failed_trials: int
    early_stopping: EarlyStopping
    gpu_hour_cap: float
    price_per_hour: float
    currency: str
    machine: str
    accelerator_count: int
    team_machines: dict[str, TeamMachine]
    trial_hours_estimate: float
    championship: dict[str, Any] | None = None
    playbook: dict[str, Any] | None = None  # orchestrator.playbook.settings_block

    @model_validator(mode="before")
    @classmethod
    def _layers_of_an_older_run(cls, raw: Any) -> Any:
        """A swarm.yaml written before the layers were kept holds their merge only: one layer."""
        if isinstance(raw, dict) and "override_layers" not in raw and "overrides" in raw:
            raw = {**raw, "override_layers": {"phase_fixed": raw["overrides"]}}
        return raw

    @property
    def cloud_study(self) -> str:
        """The run's name in the cloud: the Vizier study's display name, the CustomJobs' `study`
        label and display-name prefix, and the output prefix in the runs bucket. It carries the run
        id, so a new run dir never adopts another run's study, jobs or outputs."""
        return f"{self.study}-{self.run_id}" if self.run_id else self.study

    def team_of(self, params: dict[str, Any]) -> str:
        """The team a trial runs as: its `train.mode` param (phase 3's control team), else the swarm's."""
        mode = params.get("train.mode")
        return mode if isinstance(mode, str) and mode in self.team_machines else self.team
