"""Shared fixtures for the orchestrator tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


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
