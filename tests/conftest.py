"""Fixtures shared across the test tree.

`odlyzko_prefix(count)` / `odlyzko_small`: real datasets of the first Odlyzko zeros, built once per session
with the production loader and writer. `study_db`: a fresh Optuna SQLite file (schema in place).
`storage_emulator`: a real gcp-storage-emulator
server on 127.0.0.1 (started once per session, in a thread) with STORAGE_EMULATOR_HOST
pointing at it for the duration of one test, so the real google-cloud-storage client talks
to it.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

ODLYZKO_SMALL_COUNT = 30_000
EMULATOR_PROJECT = "zeta-swarm-test"
EMULATOR_BUCKET = "zeta-swarm-test-data"


@pytest.fixture(scope="session")
def odlyzko_prefix(tmp_path_factory) -> Callable[[int], Path]:
    """Returns `make(count)`: the path of a dataset holding gamma_1 .. gamma_count from the Odlyzko
    table, written once per session for each count."""
    from trainer.data.dataset import write_dataset
    from trainer.data.odlyzko import TABLE_ACCURACY, load_table

    made: dict[int, Path] = {}

    def make(count: int) -> Path:
        if count not in made:
            out = tmp_path_factory.mktemp("odlyzko") / f"first{count}"
            write_dataset(
                out,
                load_table(count),
                source="odlyzko",
                first_index=1,
                abs_accuracy=TABLE_ACCURACY,
                params={"count": count},
            )
            made[count] = out
        return made[count]

    return make


@pytest.fixture(scope="session")
def odlyzko_small(odlyzko_prefix) -> Path:
    """Path of a dataset directory holding gamma_1 .. gamma_30000 from the Odlyzko table."""
    return odlyzko_prefix(ODLYZKO_SMALL_COUNT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def _storage_emulator_server():
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=EMULATOR_BUCKET)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def storage_emulator(_storage_emulator_server, monkeypatch) -> str:
    """The emulator's base URL; STORAGE_EMULATOR_HOST and a project are set while the test runs.

    The bucket EMULATOR_BUCKET ("zeta-swarm-test-data") exists; objects persist across tests
    of the session, so each test should write under its own prefix.
    """
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", _storage_emulator_server)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", EMULATOR_PROJECT)
    return _storage_emulator_server


@pytest.fixture(scope="session")
def empty_study_db(tmp_path_factory) -> Path:
    """An Optuna SQLite file with the schema and no study. Creating the schema costs ~1.4 s
    (many fsyncs); copying this file costs a millisecond."""
    import optuna

    path = tmp_path_factory.mktemp("optuna-template") / "study.db"
    optuna.storages.RDBStorage(f"sqlite:///{path}")
    return path


@pytest.fixture
def study_db(tmp_path, empty_study_db) -> Path:
    """A fresh study.db path (schema already in place) inside this test's tmp_path."""
    dest = tmp_path / "study.db"
    shutil.copy(empty_study_db, dest)
    return dest
