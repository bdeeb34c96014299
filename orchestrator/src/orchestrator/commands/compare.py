"""`orchestrator compare`: the rg_penalty experiment, then its report."""

from __future__ import annotations

import click

from orchestrator.commands.infra_flags import infra_options, pop_infra_overrides


@click.command()
@click.option(
    "--config",
    "config_path",
    default="configs/experiments/compare.yaml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Experiment YAML: arms, seeds per profile, the shared trainer overrides.",
)
@click.option(
    "--profile",
    default="default",
    show_default=True,
    help="A profile of the experiment file (smoke, default).",
)
@click.option("--backend", type=click.Choice(["local", "vertex"]), default="local", show_default=True)
@click.option(
    "--run-dir",
    default="runs/compare",
    show_default=True,
    help="Experiment directory (local); resumed if it exists.",
)
@click.option(
    "--train-count", type=int, default=None, help="N training zeros per trial (default: from the file)."
)
@click.option("--seeds", type=int, default=None, help="Use only the first SEEDS seeds of the profile.")
@click.option("--parallel", type=int, default=None, help="Trials at once (default: from the profile).")
@click.option(
    "--data-path",
    default=None,
    help="Zeros dataset, local or gs:// (default: the swarm profile's data/odlyzko).",
)
@click.option(
    "--infra-outputs",
    type=click.Path(dir_okay=False),
    default=None,
    help="Terraform outputs (vertex backend).",
)
@infra_options
def compare(
    config_path, profile, backend, run_dir, train_count, seeds, parallel, data_path, infra_outputs, **infra
) -> None:
    """Team 1 with rg_penalty, Team 1 without it, and Team 2, the same budget and seeds each;
    then RUN_DIR/report/ with Scenario A/B/inconclusive as an effect size with a confidence interval."""
    from orchestrator.compare import load_design, run_compare

    design = load_design(
        config_path, profile, backend, train_count=train_count, seeds=seeds, parallel=parallel
    )
    out = run_compare(
        design,
        run_dir,
        progress=lambda line: click.echo(f"compare: {line}", err=True),
        data_path=data_path,
        infra_outputs=infra_outputs,
        infra_overrides=pop_infra_overrides(infra),
    )
    click.echo(f"{out}/index.html")
