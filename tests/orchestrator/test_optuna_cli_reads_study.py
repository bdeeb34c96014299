"""The local study is a plain Optuna storage: the `optuna` CLI (and so optuna-dashboard) reads it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from orchestrator.tuners.base import FloatParam
from orchestrator.tuners.optuna_study import OptunaTuner, storage_url

SPACE = (FloatParam("loss.gue_nll_weight", 1e-3, 1.0, log=True),)


def test_optuna_cli_lists_the_study_and_its_trials(tmp_path):
    url = storage_url(str(tmp_path / "study.db"))
    tuner = OptunaTuner(url, "phase2-minibatch", SPACE, seed=1, n_startup_trials=2)
    done, running = tuner.suggest(2)
    tuner.complete(done.id, 0.0123, {"extrapolation_stderr": 0.001})

    optuna_cli = str(Path(sys.executable).with_name("optuna"))
    studies = subprocess.run(
        [optuna_cli, "studies", "--storage", url, "-f", "json"], capture_output=True, text=True, check=True
    ).stdout
    assert [s["name"] for s in json.loads(studies)] == ["phase2-minibatch"]

    trials = subprocess.run(
        [optuna_cli, "trials", "--storage", url, "--study-name", "phase2-minibatch", "-f", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    by_number = {str(t["number"]): t for t in json.loads(trials)}
    assert by_number[done.id]["state"] == "COMPLETE"
    assert by_number[done.id]["value"] == 0.0123
    assert by_number[running.id]["state"] == "RUNNING"
    assert by_number[running.id]["params"]["loss.gue_nll_weight"] == running.params["loss.gue_nll_weight"]
