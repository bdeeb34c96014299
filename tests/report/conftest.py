"""Fixture run directories for the report tests, written once per session by run_files.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from run_files import write_fixtures


@pytest.fixture(scope="session")
def fixture_dirs(tmp_path_factory) -> dict[str, Path]:
    return write_fixtures(tmp_path_factory.mktemp("report-fixtures"))


@pytest.fixture(scope="session")
def losing_run(fixture_dirs) -> Path:
    return fixture_dirs["losing"]


@pytest.fixture(scope="session")
def winning_run(fixture_dirs) -> Path:
    return fixture_dirs["winning"]


@pytest.fixture(scope="session")
def experiment_dir(fixture_dirs) -> Path:
    return fixture_dirs["experiment"]
