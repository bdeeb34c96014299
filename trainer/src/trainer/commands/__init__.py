"""CLI subcommands. Each module exposes click commands and imports heavy modules inside them."""

from __future__ import annotations

import importlib

import click

# module name -> attribute holding the click command or group
_COMMANDS = {
    "trainer.commands.zeros": "zeros",
    "trainer.commands.train": "train",
}


def register(group: click.Group) -> None:
    for module_name, attr in _COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:  # not written yet; the rest of the CLI still works
                continue
            raise
        group.add_command(getattr(module, attr))
