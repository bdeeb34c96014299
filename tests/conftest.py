"""Fixtures shared across the test tree.

`odlyzko_small`: a real dataset of the first 30,000 Odlyzko zeros, built once per session
with the production loader and writer. `storage_emulator`: a real gcp-storage-emulator
server on 127.0.0.1 (started once per session, in a thread) with STORAGE_EMULATOR_HOST
pointing at it for the duration of one test, so the real google-cloud-storage client talks
to it.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

ODLYZKO_SMALL_COUNT = 30_000
EMULATOR_PROJECT = "zeta-swarm-test"
EMULATOR_BUCKET = "zeta-swarm-test-data"


@pytest.fixture(scope="session")
def odlyzko_small(tmp_path_factory) -> Path:
    """Path of a dataset directory holding gamma_1 .. gamma_30000 from the Odlyzko table."""
    from trainer.data.dataset import write_dataset
    from trainer.data.odlyzko import TABLE_ACCURACY, load_table

    out = tmp_path_factory.mktemp("odlyzko") / "first30k"
    write_dataset(
        out,
        load_table(ODLYZKO_SMALL_COUNT),
        source="odlyzko",
        first_index=1,
        abs_accuracy=TABLE_ACCURACY,
        params={"count": ODLYZKO_SMALL_COUNT},
    )
    return out


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
