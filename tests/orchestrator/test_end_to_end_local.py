"""A real local swarm: `orchestrator swarm --phase 2 --profile smoke` as a subprocess, launching the
real `trainer train` on real Odlyzko zeros, then `orchestrator status` on the same run directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
ZEROS = 120_000  # configs/smoke.yaml trains on zeros 100,001-104,000 and extrapolates up to ~109,000


@pytest.fixture(scope="session")
def odlyzko_120k(odlyzko_prefix) -> Path:
    return odlyzko_prefix(ZEROS)


@pytest.mark.slow
def test_smoke_swarm_runs_real_trials_and_status_shows_the_same(tmp_path, odlyzko_120k, empty_study_db):
    run_dir = tmp_path / "phase2-minibatch"
    run_dir.mkdir()
    shutil.copy(empty_study_db, run_dir / "study.db")
    env = dict(os.environ, ZETA_SWARM_DATA=str(odlyzko_120k))
    env.pop("ZETA_SWARM_CRASH_AT", None)
    proc = subprocess.run(
        [
            str(BIN / "orchestrator"),
            "swarm",
            "--phase",
            "2",
            "--profile",
            "smoke",
            "--max-trials",
            "3",
            "--parallel",
            "2",
            "--run-dir",
            str(run_dir),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert out.count(" started ") == 3 and out.count(" completed ") == 3, out
    assert "Leaderboard" in out and "baselines on the tune windows" in out

    snap = json.loads((run_dir / "trials.json").read_text())
    assert [t["state"] for t in snap["trials"]] == ["COMPLETED"] * 3
    for t in snap["trials"]:
        final = json.loads((Path(t["output_dir"]) / "final.json").read_text())
        assert final["status"] == "completed"
        assert t["value"] == final["extrapolation_error"] and t["stderr"] == final["extrapolation_stderr"]
        # Each trial ran with its own suggested weights on the zeros we gave it.
        config = (Path(t["output_dir"]) / "config.yaml").read_text()
        assert str(odlyzko_120k) in config
        # Every baseline_* key counts (five today); the verdict is the paired rule on the tune windows.
        assert len([k for k in final if k.startswith("baseline_")]) >= 5
        assert t["metrics"]["test_paired_diff"] == final["test_paired_diff"]
        paired = final["paired_diff"] + 2 * final["paired_stderr"] < 0
        assert t["beats_baseline"] == paired  # the report's rule
    weights = {
        (t["params"]["loss.gue_nll_weight"], t["params"]["loss.gue_mmd_weight"]) for t in snap["trials"]
    }
    assert len(weights) == 3

    status = subprocess.run(
        [str(BIN / "orchestrator"), "status", "--run-dir", str(run_dir), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert [(t["id"], t["state"], t["value"]) for t in shown["trials"]] == [
        (t["id"], t["state"], t["value"]) for t in snap["trials"]
    ]
    assert shown["summary"]["counts"]["COMPLETED"] == 3
    best = min(snap["trials"], key=lambda t: t["value"])
    assert shown["summary"]["best"]["ids"] == [best["id"]]
    # The optuna CLI / dashboard read the same plain storage.
    import optuna

    study = optuna.load_study(study_name="phase2-minibatch", storage=f"sqlite:///{run_dir / 'study.db'}")
    assert study.best_value == pytest.approx(best["value"])
