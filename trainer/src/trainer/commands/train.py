"""`trainer train`: one trial, a thin layer over trainer.training.run_trial."""

from __future__ import annotations

import sys

import click


@click.command()
@click.option(
    "--config", "config_path", required=True, type=click.Path(dir_okay=False), help="Trial config YAML."
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key (value parsed as YAML); repeatable.",
)
@click.option(
    "--output-dir",
    required=True,
    callback=lambda ctx, param, v: _check_output_dir(ctx, param, v),
    help="Local directory or gs:// prefix; rerunning with the same one resumes.",
)
@click.option(
    "--tensorboard-dir",
    default=None,
    help="TensorBoard log dir (default $AIP_TENSORBOARD_LOG_DIR, else none).",
)
def train(config_path: str, overrides: tuple[str, ...], output_dir: str, tensorboard_dir: str | None) -> None:
    """Train one model and write config.yaml, metrics.jsonl, final.json, predictions.json, checkpoint.pt."""
    from trainer.config import load_config

    cfg = load_config(config_path, overrides)  # bad input fails here, before torch is imported
    from trainer.training import run_trial

    code = run_trial(cfg, output_dir, tensorboard_dir=tensorboard_dir, echo=lambda line: click.echo(line))
    sys.exit(code)


def _check_output_dir(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Refuse, before anything loads, an output dir that is empty (it would write into the working
    directory), an existing file, or under a file."""
    from pathlib import Path

    if not value.strip():
        raise click.BadParameter("is empty; name the trial's output directory", ctx, param)
    if value.startswith("gs://"):
        return value
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise click.BadParameter(f"{value} exists and is not a directory", ctx, param)
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise click.BadParameter(f"{value} is under {parent}, which is a file", ctx, param)
            break
    return value
