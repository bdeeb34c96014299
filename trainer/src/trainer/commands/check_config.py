"""`trainer check-config`: validate trial configs exactly as `trainer train` would, without training.

The orchestrator may not import the trainer, so before a swarm launches anything (and on a dry
run) it runs this once with every distinct resolved config of the swarm: the trainer's own
schema, cross checks, and whether the dataset exists and holds every zero the trial reads.
Imports no torch, so a check costs well under a second.
"""

from __future__ import annotations

import json
import sys

import click


def check_one(config_path: str, overrides: list[str] | tuple[str, ...]) -> None:
    """Load and validate one config, then check its dataset covers the training range and windows.

    Raises:
        ConfigError, DataError: the first problem, one line per problem (exit 2 from the CLI).
    """
    from trainer import storage
    from trainer.config import load_config
    from trainer.data.dataset import open_dataset
    from trainer.errors import ConfigError, DataError

    cfg = load_config(config_path, overrides)
    path = cfg.data.path
    if not storage.is_remote(path):
        if not storage.exists(storage.join(path, "manifest.json")):
            raise DataError(
                f"data.path: no zeros dataset at {path} (run `make data`, or set data.path or $ZETA_SWARM_DATA)"
            )
        ds = open_dataset(path)
        first = cfg.data.train_start - cfg.model.window
        last = cfg.last_tune_index()
        if first < ds.first_index or last > ds.last_index:
            raise ConfigError(
                f"data.path: {path} holds zeros n = {ds.first_index}..{ds.last_index}, but this trial reads "
                f"n = {first}..{last} (training history, validation and the last window's horizon)"
            )


@click.command("check-config")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Trial config YAML.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="As for `trainer train`.")
@click.option(
    "--batch",
    is_flag=True,
    help="Read one config per stdin line as a JSON list of `train` arguments "
    '(["--config", F, "--set", "k=v", ...]); report every bad one.',
)
def check_config(config_path: str | None, overrides: tuple[str, ...], batch: bool) -> None:
    """Validate a trial config (and its dataset) as `trainer train` would; exit 2 with the problems."""
    from trainer.errors import ConfigError, TrainerError

    if not batch:
        if config_path is None:
            raise click.UsageError("--config is required (or --batch)")
        check_one(config_path, overrides)
        click.echo(f"ok {config_path}")
        return
    bad = []
    lines = [line for line in sys.stdin.read().splitlines() if line.strip()]
    for n, line in enumerate(lines, 1):
        try:
            args = json.loads(line)
            config, sets = _parse(args)
            check_one(config, sets)
        except (TrainerError, ValueError) as e:
            bad.append(f"config {n}: {str(e).splitlines()[0]}")
    if bad:
        raise ConfigError("\n".join(bad))
    click.echo(f"ok: {len(lines)} config(s)")


def _parse(args: object) -> tuple[str, list[str]]:
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ValueError("each line must be a JSON list of strings")
    config, sets, i = None, [], 0
    while i < len(args):
        if args[i] == "--config" and i + 1 < len(args):
            config, i = args[i + 1], i + 2
        elif args[i] == "--set" and i + 1 < len(args):
            sets.append(args[i + 1])
            i += 2
        else:
            raise ValueError(f"unexpected argument {args[i]!r}")
    if config is None:
        raise ValueError("no --config")
    return config, sets
