"""`orchestrator zeros`: a sharded zeros dataset made by a fan-out of `trainer zeros` jobs (orchestrator.zeros)."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import click

from orchestrator.commands.infra_flags import infra_options, pop_infra_overrides
from orchestrator.storage import is_gcs

if TYPE_CHECKING:
    from orchestrator.vertex_settings import ZerosMachine


def _vertex_zeros_machine(device: str) -> ZerosMachine:
    """The `zeros` machine for `device` in configs/backends/vertex.yaml."""
    from orchestrator.errors import ConfigError
    from orchestrator.paths import CONFIG_DIR
    from orchestrator.vertex_settings import load_vertex_backend

    path = CONFIG_DIR / "backends" / "vertex.yaml"
    machine = getattr(load_vertex_backend(path).zeros, device)
    if machine is None:
        raise ConfigError(f"{path}: zeros.{device}.machine_type is not set")
    return machine


def _price(machine_type: str) -> float | None:
    import yaml

    from orchestrator.paths import CONFIG_DIR

    prices = (yaml.safe_load((CONFIG_DIR / "budgets.yaml").read_text()) or {}).get("prices_per_hour") or {}
    return prices.get(machine_type)


@click.command()
@click.option("--start", type=click.IntRange(min=1), required=True, help="1-based index of the first zero.")
@click.option("--count", type=click.IntRange(min=1), required=True, help="Number of zeros in all.")
@click.option(
    "--shards", type=click.IntRange(min=1, max=99_999), required=True, help="Generated shards (one job each)."
)
@click.option("--out", required=True, metavar="DIR", help="Sharded dataset directory (local or gs://).")
@click.option(
    "--table",
    is_flag=True,
    help="Zeros 1..2,001,052 from the Odlyzko table as shard 0 (needs --start 1); --shards cut the rest.",
)
@click.option("--backend", type=click.Choice(["local", "vertex"]), default="local", show_default=True)
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=None,
    help="Jobs at once (default: local CPUs; vertex: all).",
)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="CPU processes per job (default: 1 locally; vertex: zeros.cpu.workers in configs/backends/vertex.yaml).",
)
@click.option(
    "--run-dir", default=None, help="Job files and the plan (default: DIR/.orchestrator, or runs/<study>)."
)
@click.option("--dry-run", is_flag=True, help="Print the jobs with estimated hours and cost; launch nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: the plan as JSON.")
@click.option(
    "--infra-outputs", type=click.Path(dir_okay=False), default=None, help="Terraform outputs (vertex)."
)
@infra_options
def zeros(
    start,
    count,
    shards,
    out,
    table,
    backend,
    parallel,
    device,
    workers,
    run_dir,
    dry_run,
    as_json,
    infra_outputs,
    **infra,
):
    """Make zeros start..start+count-1 as a sharded dataset: one job per shard, crash-safe, then merge and verify."""
    from orchestrator.errors import ConfigError
    from orchestrator.paths import CONFIG_DIR
    from orchestrator.zeros import Throughput, ZerosRun, ZerosSettings, check_out, check_plan, study_name
    from orchestrator.zeros import dry_run as plan_dry_run

    overrides = pop_infra_overrides(infra)
    if not out.strip():
        raise ConfigError(
            "--out '': give the dataset directory (an empty path would be the current directory)"
        )
    if as_json and not dry_run:
        raise click.UsageError("--json goes with --dry-run")
    if backend == "vertex" and not is_gcs(out):
        raise ConfigError(f"--out {out}: the vertex backend writes to a gs:// dataset directory")
    if backend == "local" and device == "cuda":
        raise ConfigError("--device cuda: the local backend runs on CPU cores; use --backend vertex for GPUs")
    machine, price = "local-cpu", None
    if backend == "vertex":
        spec = _vertex_zeros_machine(device)
        machine, price = spec.machine_type, _price(spec.machine_type)
        if device == "cpu" and workers is None:
            workers = spec.workers or 1
    # One spelling per dataset: the study name (and so which jobs a restart adopts) hashes it.
    out = out.rstrip("/") if is_gcs(out) else os.path.abspath(out)
    if run_dir is None:
        run_dir = f"runs/{study_name(out)}" if is_gcs(out) else os.path.join(out, ".orchestrator")
    settings = ZerosSettings(
        start=start,
        count=count,
        shards=shards,
        table=table,
        out=out,
        run_dir=run_dir,
        parallel=parallel or ((os.cpu_count() or 1) if backend == "local" else 10_000),
        device=device,
        workers=workers or 1,
        team=f"zeros-{device}",
    )
    plan = settings.plan()
    if dry_run:
        summary = plan_dry_run(
            settings, Throughput.load(CONFIG_DIR / "zeros.yaml"), machine=machine, price_per_hour=price
        )
        if as_json:
            click.echo(json.dumps(summary, indent=2))
            return
        for job in summary["jobs"]:
            click.echo(
                f"shard {job['shard']}: n={job['first_index']:,}..{job['last_index']:,} ~{job['est_hours']} h  {' '.join(job['argv'])}"
            )
        click.echo(
            f"{len(plan)} jobs on {machine}: ~{summary['est_job_hours']} job-hours, ~{summary['est_wall_hours']} h wall "
            f"at --parallel {settings.parallel}, cost ~{summary['est_cost_usd']} USD; dry run: nothing was launched"
        )
        return
    check_out(settings, plan)
    os.makedirs(settings.run_dir, exist_ok=True)
    check_plan(settings, plan)
    from orchestrator.runners.local import default_trainer_command

    if backend == "local":
        from orchestrator.runners.local import LocalRunner

        runner = LocalRunner(
            settings.run_dir, settings.study(), env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        )
    else:
        import dataclasses

        from orchestrator.backends import _load_vertex_settings
        from orchestrator.runners.vertex import VertexRunner

        vs = _load_vertex_settings(
            str(CONFIG_DIR / "backends" / "vertex.yaml"), infra_outputs, tuple(sorted(overrides.items()))
        )
        zeros_machine = _vertex_zeros_machine(device).spec()
        vs = dataclasses.replace(vs, machines={**vs.machines, settings.team: zeros_machine})
        runner = VertexRunner(vs, settings.study())
    click.echo(
        f"zeros: {len(plan)} shards of n = {start:,}..{start + count - 1:,} into {out} ({backend}, run dir {settings.run_dir})"
    )
    run = ZerosRun(settings, runner, default_trainer_command(), out=lambda line: click.echo(line))
    counts = run.generate()
    click.echo(
        f"zeros: all shards written ({counts['launched']} launched now, {counts['adopted']} adopted running, "
        f"{counts['already_done']} done before); merging"
    )
    run.merge_and_verify()
