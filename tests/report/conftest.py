"""Fixture run directories for the report tests, written once per session by run_files.py.

run_files.py is loaded by its path, so these tests work under any pytest import mode."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("report_run_files", Path(__file__).with_name("run_files.py"))
run_files = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_files)


@pytest.fixture(scope="session")
def fixture_dirs(tmp_path_factory) -> dict[str, Path]:
    return run_files.write_fixtures(tmp_path_factory.mktemp("report-fixtures"))


@pytest.fixture(scope="session")
def losing_run(fixture_dirs) -> Path:
    return fixture_dirs["losing"]


@pytest.fixture(scope="session")
def winning_run(fixture_dirs) -> Path:
    return fixture_dirs["winning"]


@pytest.fixture(scope="session")
def experiment_dir(fixture_dirs) -> Path:
    return fixture_dirs["experiment"]


@pytest.fixture
def make_run():
    """run_files.write_run: a run directory with given errors of its completed trials."""
    return run_files.write_run


@pytest.fixture
def make_experiment():
    """run_files.write_experiment: an experiment directory with given per-seed errors per arm."""
    return run_files.write_experiment


@pytest.fixture
def make_championship():
    """run_files.write_championship: a phase-3 run directory with given configurations and seeds."""
    return run_files.write_championship
