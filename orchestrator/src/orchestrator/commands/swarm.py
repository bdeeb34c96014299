"""`orchestrator swarm` and `orchestrator stop`: thin wrappers over orchestrator.phases."""

from __future__ import annotations

import json

import click

from orchestrator.commands.infra_flags import infra_options, pop_infra_overrides
from orchestrator.errors import Interrupted, SwarmFailed

TEAMS = ("fullbatch", "minibatch")  # orchestrator.teams.TEAMS, without pydantic at start-up
RUN_DIR_ENV = "ZETA_SWARM_RUN_DIR"  # what every --run-dir option reads when the flag is not given
# A cloud swarm without --profile gets GPU-sized trials; the local default fits 2 CPU cores.
DEFAULT_PROFILES = {"local": "default", "vertex": "cloud"}


@click.command()
@click.option(
    "--phase",
    type=click.Choice(["1", "2", "3", "playbook"]),
    required=True,
    callback=lambda _ctx, _param, value: value if value == "playbook" else int(value),
    help="1: lock the architecture, 2: find the physics, 3: championship, playbook: tiered rounds.",
)
@click.option(
    "--team",
    type=click.Choice(TEAMS),
    default="minibatch",
    show_default=True,
    help="Team 1 full-batch or Team 2 mini-batch.",
)
@click.option(
    "--backend",
    default="local",
    show_default=True,
    help="local (Optuna + processes) or vertex (Vizier + CustomJobs).",
)
@click.option(
    "--profile",
    default=None,
    help="configs/profiles/<name>.yaml: default, smoke or cloud (default: cloud on vertex, else default).",
)
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=None,
    help="Trials at once (default: profile, phase, backend).",
)
@click.option(
    "--max-trials", type=click.IntRange(min=1), default=None, help="Trials in all (default: profile, phase)."
)
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False),
    default=None,
    envvar=RUN_DIR_ENV,
    help=f"Default runs/phase<N>-<team> (or ${RUN_DIR_ENV}).",
)
@click.option(
    "--infra-outputs",
    type=click.Path(dir_okay=False),
    default=None,
    help="Terraform outputs (vertex backend).",
)
@click.option(
    "--experiments",
    is_flag=True,
    help="Vertex: every trial's per-epoch curve and result in Vertex AI Experiments (needs the infra TensorBoard).",
)
@click.option("--dry-run", is_flag=True, help="Print the study and the trial commands; launch nothing.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="With --dry-run on vertex: the StudySpec and CustomJob requests as JSON.",
)
@infra_options
def swarm(
    phase,
    team,
    backend,
    profile,
    parallel,
    max_trials,
    run_dir,
    infra_outputs,
    experiments,
    dry_run,
    as_json,
    **infra,
):
    """Run a phase's swarm to its end, with live progress and the leaderboard at the end."""
    from orchestrator.leaderboard import format_leaderboard
    from orchestrator.phases import SwarmRun, check_trainer_configs
    from orchestrator.settings_loader import load_settings

    notes = []  # the first lines: which profile and (on vertex) which outputs file are in use
    if profile is None:
        profile = DEFAULT_PROFILES.get(backend, "default")
        notes.append(f"profile: {profile} (the default for --backend {backend})")
    elif backend == "vertex":
        notes.append(f"profile: {profile} (from --profile)")
    if backend == "vertex":
        from orchestrator.infra_outputs import outputs_file

        infra_outputs, why = outputs_file(infra_outputs)
        notes.append(f"infra outputs: {infra_outputs or '(flags only)'} ({why})")
    settings = load_settings(
        phase,
        team=team,
        backend=backend,
        profile=profile,
        parallel=parallel,
        max_trials=max_trials,
        run_dir=run_dir,
        infra_outputs=infra_outputs,
        infra_overrides=pop_infra_overrides(infra),
        experiments=experiments,
    )
    if experiments:
        from orchestrator.backends import experiments_settings

        experiments_settings(settings)  # a missing TensorBoard fails here, before anything runs
    if as_json and not (dry_run and backend == "vertex"):
        raise click.UsageError("--json goes with --dry-run --backend vertex")
    # After the settings are good, so a bad input stays one line. stdout carries only the JSON plan
    # with --json, so the notes go to stderr there.
    for line in notes:
        click.echo(line, err=as_json)
    if backend == "vertex":
        from orchestrator.run_files import record_run_id

        # Recorded now, even by a dry run, so the names a dry run shows are the ones the run uses.
        record_run_id(settings.run_dir, settings.run_id)
        click.echo(f"run id: {settings.run_id or '(none)'}; cloud names: {settings.cloud_study}", err=as_json)
    run = SwarmRun(settings, out=lambda line: click.echo(line))
    if not dry_run:
        run.check_run_dir()  # a damaged run dir is refused before anything else runs or changes
    checked = check_trainer_configs(settings)
    if not as_json:  # stdout is the JSON plan alone, and tests read stderr mixed into it
        click.echo(f"checked {checked} trainer config(s) with `trainer check-config`")
    if dry_run:
        if backend == "vertex":  # the cloud requests themselves, built offline by the Vertex backends
            from orchestrator.vertex_plan import dry_run_lines, dry_run_plan

            if as_json:
                click.echo(json.dumps(dry_run_plan(settings), indent=2))
                return
        for line in run.dry_run() + (dry_run_lines(settings) if backend == "vertex" else []):
            click.echo(line)
        click.echo("dry run: nothing was launched")
        return
    try:
        snap = run.run()
    except KeyboardInterrupt:
        raise Interrupted(interrupted_line(settings)) from None
    click.echo("")
    click.echo(format_leaderboard(snap))
    if snap.get("failed"):
        raise SwarmFailed(f"phase {phase} failed: {snap.get('ended_because')}")
    click.echo(
        f"\nfinished: {snap.get('ended_because')}; `orchestrator status --run-dir {settings.run_dir}` shows the same"
    )


def interrupted_line(settings) -> str:
    """What Ctrl-C leaves behind: the trials still running (they outlive the controller) and how to
    pick them up or stop them."""
    from orchestrator import backends

    try:
        running = [j for j in backends.make_runner(settings).jobs() if not j.state.finished]
    except Exception as e:  # the message must still come out; say why the list is missing
        return f"interrupted; could not list the running trials ({e}); see `orchestrator status`"
    if not running:
        return f"interrupted: no trial is running; rerun the same command to resume {settings.run_dir}"
    ids = ", ".join(sorted({j.trial_id for j in running}, key=lambda i: int(i) if i.isdigit() else 0))
    return (
        f"interrupted: the controller stopped but {len(running)} trial job(s) keep running (trial {ids}); "
        f"rerun the same command to pick them up, or `orchestrator stop --run-dir {settings.run_dir}` "
        "to cancel them"
    )


@click.command()
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False),
    default=None,
    envvar=RUN_DIR_ENV,
    help=f"Default: ${RUN_DIR_ENV}, else the latest run under runs/.",
)
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for a running controller to exit.",
)
def stop(run_dir, wait_s):
    """Cancel running trials, stop them in the study and make a running controller exit."""
    from orchestrator.phases import stop_run
    from orchestrator.run_files import latest_run_dir

    stop_run(run_dir or latest_run_dir(), out=lambda line: click.echo(line), wait_s=wait_s)
