"""CLI subcommands. Each module exposes click commands and imports heavy modules inside them."""

from __future__ import annotations

import importlib

import click

# module name -> attributes holding click commands
_COMMANDS = {
    "orchestrator.commands.swarm": ("swarm", "stop"),
    "orchestrator.commands.status": ("status",),
    "orchestrator.commands.report": ("report",),
    "orchestrator.commands.compare": ("compare",),
    "orchestrator.commands.zeros": ("zeros",),
    "orchestrator.commands.repair": ("repair",),
    "orchestrator.commands.dashboard": ("dashboard",),
}


def register(group: click.Group) -> None:
    for module_name, attrs in _COMMANDS.items():
        module = importlib.import_module(module_name)
        for attr in attrs:
            group.add_command(getattr(module, attr))
