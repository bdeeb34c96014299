"""The `trainer` command: a thin click layer over the engine.

Subcommands live in `trainer.commands.*` and import torch and friends lazily, so
`trainer --help` and `trainer zeros info` stay fast. Every TrainerError becomes one line
on stderr and its exit code.
"""

from __future__ import annotations

import sys

import click

from trainer.errors import TrainerError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TrainerError as e:
            click.echo(f"trainer: error: {e}", err=True)
            sys.exit(e.exit_code)
        except Exception as e:
            if _is_missing_credentials(e):
                click.echo(f"trainer: error: {_NO_CREDENTIALS}", err=True)
                sys.exit(2)
            raise


_NO_CREDENTIALS = (
    "no Google Cloud credentials for a gs:// path or a cloud backend: run "
    "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
)


def _is_missing_credentials(e: Exception) -> bool:
    # google.auth is only in sys.modules if a cloud client was created, so the common path
    # imports nothing.
    auth = sys.modules.get("google.auth.exceptions")
    return auth is not None and isinstance(e, auth.DefaultCredentialsError)


@click.group(cls=_Group)
@click.version_option(package_name="zeta-swarm-trainer")
def main() -> None:
    """Riemann zeros datasets and one zeta-swarm training trial."""


def _register() -> None:
    from trainer.commands import register

    register(main)


_register()
