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
