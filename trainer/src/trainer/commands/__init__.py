"""CLI subcommands. Each module exposes click commands and imports heavy modules inside them."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    from trainer.commands.check_config import check_config
    from trainer.commands.train import train
    from trainer.commands.zeros import zeros

    group.add_command(zeros)
    group.add_command(train)
    group.add_command(check_config)
