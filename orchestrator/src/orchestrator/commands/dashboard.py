"""`orchestrator dashboard`: optuna-dashboard on a run's study.db (the local backend's study)."""

from __future__ import annotations

import click


@click.command()
@click.option(
    "--run-dir", type=click.Path(file_okay=False), default=None, help="Default: the latest run under runs/."
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0: a free port."
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; the default keeps the dashboard on this machine.",
)
def dashboard(run_dir, port, host):
    """Serve optuna-dashboard (read-only) on RUN_DIR/study.db: trials with their parameters, the
    objective, intermediate values, and as user attributes the baselines, the paired verdict and
    each trial's output directory. Ctrl-C stops it."""
    from orchestrator.dashboard import serve
    from orchestrator.run_files import latest_run_dir

    run_dir = run_dir or latest_run_dir()
    serve(run_dir, host, port, ready=lambda url: click.echo(f"optuna-dashboard on {run_dir}: {url}"))
