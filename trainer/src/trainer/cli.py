"""The `trainer` command: a thin click layer over the engine.

Subcommands live in `trainer.commands.*` and import torch and friends lazily, so
`trainer --help` and `trainer zeros info` stay fast. Every TrainerError becomes one line
on stderr and its exit code.
"""

from __future__ import annotations

import sys

import click

from trainer.errors import TrainerError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TrainerError as e:
            click.echo(f"trainer: error: {e}", err=True)
            sys.exit(e.exit_code)


@click.group(cls=_Group)
@click.version_option(package_name="zeta-swarm-trainer")
def main() -> None:
    """Riemann zeros datasets and one zeta-swarm training trial."""


def _register() -> None:
    from trainer.commands import register

    register(main)


_register()
