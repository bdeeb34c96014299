"""`orchestrator report`: pages and plots from one or more run directories."""

from __future__ import annotations

import click


@click.command()
@click.option(
    "--run-dir",
    "run_dirs",
    multiple=True,
    required=True,
    help="Run directory (trials.json) or experiment directory (experiment.json), local or gs://. Repeatable.",
)
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="Local output directory (replaced)."
)
@click.option("--no-plots", is_flag=True, help="Write index.html and summary.md only (fast).")
def report(run_dirs: tuple[str, ...], out: str, no_plots: bool) -> None:
    """Write OUT/index.html, OUT/summary.md and PNG plots: leaderboards against the baselines,
    spacing and block-variance plots, optimisation history, and the verdict of an experiment."""
    from orchestrator.report import build_report

    build_report(
        list(run_dirs), out, progress=lambda line: click.echo(f"report: {line}", err=True), plots=not no_plots
    )
    click.echo(f"{out}/index.html")
