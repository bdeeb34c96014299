"""optuna-dashboard on a run's study.db, read-only: the controller is the study's only writer.

The dashboard's own write endpoints (notes, telling trials, user attributes) answer 405 here, so a
click in the browser can never change a trial the controller is driving.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.storage import is_gcs

STUDY_FILE = "study.db"
READ_METHODS = ("GET", "HEAD")


def study_path(run_dir: str | os.PathLike) -> Path:
    """RUN_DIR/study.db, checked to exist (opening a missing file would create an empty study).

    Raises:
        ConfigError: a gs:// run dir (its study is in Vizier) or no study.db in it.
    """
    if is_gcs(run_dir):
        raise ConfigError(
            f"{run_dir}: the dashboard reads a local study.db; a Vertex run's Bayesian study lives in "
            "Vizier (its console link is in `orchestrator status`)"
        )
    path = Path(run_dir) / STUDY_FILE
    if not path.is_file():
        raise ConfigError(
            f"{path}: not found; no local swarm has run in {run_dir} (start one with `make swarm`)"
        )
    return path


def read_only(app: Callable) -> Callable:
    """A WSGI app that passes GET and HEAD to `app` and answers every other method with 405."""

    def guarded(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET") in READ_METHODS:
            return app(environ, start_response)
        body = b"read-only: the swarm's controller is the only writer of this study\n"
        start_response(
            "405 Method Not Allowed",
            [
                ("Content-Type", "text/plain"),
                ("Allow", ", ".join(READ_METHODS)),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]

    return guarded


def serve(run_dir: str | os.PathLike, host: str, port: int, ready: Callable[[str], None]) -> None:
    """Serve optuna-dashboard on RUN_DIR/study.db at http://HOST:PORT/ until interrupted.

    Args:
        run_dir: a local run directory holding study.db.
        host: address to bind (127.0.0.1 keeps it on this machine).
        port: TCP port; 0 picks a free one.
        ready: called with the dashboard's URL once the socket listens.
    """
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from orchestrator.tuners.optuna_study import open_storage, storage_url

    path = study_path(run_dir)
    try:
        from optuna_dashboard import wsgi
    except ModuleNotFoundError as e:
        raise ConfigError(
            "optuna-dashboard is not installed: pip install -e 'orchestrator[dashboard]' (make install does)"
        ) from e
    app = read_only(wsgi(open_storage(storage_url(str(path.resolve())))))

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # one line per request is noise here
            pass

    try:
        server = make_server(host, port, app, handler_class=QuietHandler)
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    with server:
        ready(f"http://{host}:{server.server_port}/dashboard")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
