"""`orchestrator status`: reads RUN_DIR/trials.json (and with --watch each running trial's
metrics.jsonl) only: no optuna, no cloud SDK unless the run dir is on gs://, so it is instant."""

from __future__ import annotations

import json
import math
import sys
import time

import click

from orchestrator.commands.swarm import RUN_DIR_ENV


@click.command()
@click.option(
    "--run-dir",
    default=None,
    envvar=RUN_DIR_ENV,
    help=f"Local or gs:// run directory. Default: ${RUN_DIR_ENV}, else the latest run under runs/.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the trials.json object plus a `summary`.")
@click.option(
    "--watch",
    is_flag=True,
    help="Redraw in place until the run is over: progress of each running trial, slots, best so far, GPU-hours.",
)
@click.option(
    "--interval",
    type=float,
    callback=lambda ctx, param, v: _interval(v),
    default=2.0,
    show_default=True,
    help="Seconds between redraws with --watch.",
)
def status(run_dir, as_json, watch, interval):
    """Trials by state, running trials with age, the best value ± stderr against the best baseline,
    GPU-hours and cost, and the leaderboard."""
    from orchestrator.leaderboard import format_leaderboard, format_status, summary
    from orchestrator.live import Watch
    from orchestrator.run_files import latest_run_dir

    if as_json and watch:
        raise click.UsageError("--json and --watch: choose one")
    run_dir = str(run_dir or latest_run_dir())
    if watch:
        Watch(run_dir, sys.stdout, clock=time.time, sleep=time.sleep, interval=interval).run()
        return
    snap = _snapshot(run_dir)
    if as_json:
        click.echo(json.dumps({**snap, "summary": summary(snap)}, indent=1))
        return
    click.echo(format_status(snap))
    click.echo("")
    click.echo(format_leaderboard(snap))


def _snapshot(run_dir: str) -> dict:
    """trials.json (local or gs://); when a local one is damaged, the state rebuilt from the study
    and the jobs (said on stderr, nothing written: `orchestrator repair` rewrites the file)."""
    from orchestrator import storage
    from orchestrator.reading import DamagedFile
    from orchestrator.run_files import read_snapshot

    if storage.is_gcs(run_dir):
        from orchestrator.live import read_run

        return read_run(run_dir)[0]
    try:
        return read_snapshot(run_dir)
    except DamagedFile as e:
        from orchestrator.repair import rebuilt_snapshot

        snap = rebuilt_snapshot(run_dir)
        click.echo(
            f"note: {e.path}: {e.problem}; showing the state rebuilt from the study "
            f"(`orchestrator repair --run-dir {run_dir}` rewrites the file)",
            err=True,
        )
        return snap


def _interval(value: float) -> float:
    if not math.isfinite(value) or not 0.1 <= value <= 86_400:
        raise click.BadParameter(f"{value} is not a number of seconds between 0.1 and 86400")
    return value
