"""The single-setting infra flags (--project-id, --region, --runs-bucket, ...) shared by the commands
that reach Vertex AI: each overrides one Terraform output of --infra-outputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from orchestrator.infra_outputs import OVERRIDE_FLAGS


def infra_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add one option per infra setting; the command receives them as `infra_overrides` (name -> value or None)."""
    for name, flag in reversed(OVERRIDE_FLAGS.items()):
        command = click.option(
            flag,
            name,
            default=None,
            metavar="VALUE",
            help=f"Vertex backend: {name} (wins over --infra-outputs).",
        )(command)
    return command


def pop_infra_overrides(kwargs: dict[str, Any]) -> dict[str, str | None]:
    """Take the infra options out of a command's keyword arguments."""
    return {name: kwargs.pop(name) for name in OVERRIDE_FLAGS}
