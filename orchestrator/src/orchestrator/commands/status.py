"""`orchestrator status`: reads RUN_DIR/trials.json only (no optuna, no cloud SDK), so it is instant."""

from __future__ import annotations

import json
import time

import click


@click.command()
@click.option(
    "--run-dir", type=click.Path(file_okay=False), default=None, help="Default: the latest run under runs/."
)
@click.option("--json", "as_json", is_flag=True, help="Print the trials.json object plus a `summary`.")
@click.option("--watch", is_flag=True, help="Refresh every --interval seconds until Ctrl-C.")
@click.option(
    "--interval", type=float, default=2.0, show_default=True, help="Seconds between refreshes with --watch."
)
def status(run_dir, as_json, watch, interval):
    """Trials by state, running trials with age, the best value ± stderr, GPU-hours and cost."""
    from orchestrator.leaderboard import format_leaderboard, format_status, summary
    from orchestrator.run_files import latest_run_dir, read_snapshot

    run_dir = run_dir or latest_run_dir()
    while True:
        snap = read_snapshot(run_dir)
        if as_json:
            click.echo(json.dumps({**snap, "summary": summary(snap)}, indent=1))
        else:
            if watch:
                click.clear()
            click.echo(format_status(snap))
            click.echo("")
            click.echo(format_leaderboard(snap))
        if not watch:
            return
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return
