"""The `trainer` command: a thin click layer over the engine.

Subcommands live in `trainer.commands.*` and import torch and friends lazily, so
`trainer --help` and `trainer zeros info` stay fast. Every TrainerError becomes one line
on stderr and its exit code.
"""

from __future__ import annotations

import errno
import sys

import click

from trainer.errors import TrainerError

# An error of the environment, not of the input or the code: the orchestrator retries a trial that
# exits with EXIT_ENVIRONMENT without using up one of its retries (docs/contracts.md "Exit codes").
EXIT_ENVIRONMENT = 75
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}
# A path that cannot be (too long, under a file, a loop): bad input. Not ENOENT: a file that
# vanished mid-run (an evicted cache entry) stays an internal error, which the swarm retries.
_PATH_ERRNOS = {errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP}


def _short(path) -> str:
    """A path for a one-line message: the middle of a very long one elided."""
    text = str(path)
    return text if len(text) <= 160 else f"{text[:60]}...{text[-60:]}"


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TrainerError as e:
            click.echo(f"trainer: error: {e}", err=True)
            sys.exit(e.exit_code)
        except click.UsageError as e:  # one line, like every other bad input
            hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
            click.echo(f"trainer: error: {e.format_message()}{hint}", err=True)
            sys.exit(2)
        except OSError as e:
            where = f"{_short(e.filename)}: " if e.filename else ""
            if e.errno in _PATH_ERRNOS:  # a path given that cannot be: bad input
                click.echo(f"trainer: error: {where}{e.strerror}", err=True)
                sys.exit(2)
            if e.errno not in _ENVIRONMENT_ERRNOS:
                raise
            click.echo(
                f"trainer: error: {where}{e.strerror} (the environment: free space or fix permissions, "
                "then rerun; a trial resumes from its checkpoint)",
                err=True,
            )
            sys.exit(EXIT_ENVIRONMENT)
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
