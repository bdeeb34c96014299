"""A round as the run keeps it (RUN_DIR/swarm.yaml `rounds:`): resolved from its phase file entry by
its kind (orchestrator.rounds), ready for the tuner. It imports no round kind, so the settings
model holds it without importing the kinds that read the settings."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from orchestrator.schema import Strict
from orchestrator.tuners.base import CategoricalParam, FloatParam, IntParam, Param
from orchestrator.values import Value

# A Param stored in a RoundPlan (RUN_DIR/swarm.yaml): its `type` says which of the three it is.
StoredParam = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class RoundPlan(Strict):
    """One round, ready for the tuner: its params, design points (None = the tuner suggests) and
    fixed overrides, as RUN_DIR/swarm.yaml keeps it. The controller drives a copy whose points are
    the ones the round runs (resolved at run time)."""

    name: str
    kind: str
    space: list[StoredParam]
    points: list[dict[str, Any]] | None
    fixed: dict[str, Value]
    carry: list[str] = []

    def params(self) -> list[Param]:
        return list(self.space)
