"""The `orchestrator` command: a thin click layer over the engine.

Subcommands live in `orchestrator.commands.*`; they import optuna, cloud SDKs and matplotlib
inside the command functions, so `orchestrator --help` starts fast. Every OrchestratorError and
every usage error becomes one line on stderr and its exit code; so does an OSError on a path
that cannot be (exit 2). Every `--run-dir` also reads
ZETA_SWARM_RUN_DIR; any other option reads ZETA_SWARM_<COMMAND>_<OPTION> (click's automatic
names, e.g. ZETA_SWARM_STATUS_INTERVAL).
"""

from __future__ import annotations

import errno
import sys

import click

from orchestrator.errors import OrchestratorError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OrchestratorError as e:
            click.echo(f"orchestrator: error: {e}", err=True)
            sys.exit(e.exit_code)
        except click.UsageError as e:  # one line, like every other bad input
            hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
            click.echo(f"orchestrator: error: {e.format_message()}{hint}", err=True)
            sys.exit(2)
        except OSError as e:
            if e.errno not in _PATH_ERRNOS:
                raise
            # A path given that cannot be (under a file, under /proc, too long): bad input.
            name = str(e.filename or "")
            name = name if len(name) <= 160 else f"{name[:60]}...{name[-60:]}"
            click.echo(f"orchestrator: error: {name + ': ' if name else ''}{e.strerror}", err=True)
            sys.exit(2)
        except Exception as e:
            if _is_missing_credentials(e):
                click.echo(f"orchestrator: error: {_NO_CREDENTIALS}", err=True)
                sys.exit(2)
            raise


_PATH_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP}

_NO_CREDENTIALS = (
    "no Google Cloud credentials for a gs:// path or a cloud backend: run "
    "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
)


def _is_missing_credentials(e: Exception) -> bool:
    # google.auth is only in sys.modules if a cloud client was created, so the common path
    # imports nothing.
    auth = sys.modules.get("google.auth.exceptions")
    return auth is not None and isinstance(e, auth.DefaultCredentialsError)


@click.group(cls=_Group, context_settings={"auto_envvar_prefix": "ZETA_SWARM"})
@click.version_option(package_name="zeta-swarm-orchestrator")
def main() -> None:
    """Guided hyperparameter swarms for the zeta-zeros GNN (Optuna locally, Vizier on Vertex AI)."""


def _register() -> None:
    from orchestrator.commands import register

    register(main)


_register()
