"""configs/teams/<team>.yaml: what machine a team's trials run on and which trainer config they
start from. It imports only the schema machinery, so the settings loader and the Vertex settings
(orchestrator.vertex_settings.load_team_machines) validate a team file with the same model."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field

from orchestrator.schema import Strict

TeamName = Literal["fullbatch", "minibatch"]
TEAMS: tuple[str, ...] = get_args(TeamName)


class Team(Strict):
    """configs/teams/<team>.yaml"""

    name: TeamName
    mode: TeamName  # a team is named for its training mode
    description: str = ""
    trainer_config: str  # relative to the team file
    machine_type: str
    accelerator_type: str
    accelerator_count: Annotated[int, Field(ge=0, le=16)]

    @property
    def machine(self) -> str:
        return f"{self.machine_type} + {self.accelerator_count} x {self.accelerator_type}"
