"""`orchestrator repair`: check a run directory and rebuild its derived files (orchestrator.repair)."""

from __future__ import annotations

import click

from orchestrator.commands.swarm import RUN_DIR_ENV


@click.command()
@click.option(
    "--run-dir",
    required=True,
    type=click.Path(file_okay=False),
    envvar=RUN_DIR_ENV,
    help=f"The run directory to check (or ${RUN_DIR_ENV}).",
)
def repair(run_dir: str) -> None:
    """Check a run directory; rebuild trials.json and events.jsonl, set damaged job directories aside
    (their trials run again) and list every change. A damaged study.db is refused with the backup
    to restore."""
    from orchestrator.repair import repair as repair_run

    repair_run(run_dir, out=lambda line: click.echo(line))
