"""CliRunner tests of `orchestrator swarm`, `status` and `stop` flags and output."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from orchestrator.cli import main
from orchestrator.controller import Controller
from orchestrator.runners.base import JobState
from swarm_helpers import FAKE_TRAINER, FakeClock, settings

from orchestrator import backends


def _invoke(*args):
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def zeros(odlyzko_prefix, monkeypatch):
    """A dataset covering the default and smoke windows: a dry run checks every trainer config
    against it (`trainer check-config`), and a fresh clone has no data/odlyzko."""
    monkeypatch.setenv("ZETA_SWARM_DATA", str(odlyzko_prefix(120_000)))


def test_dry_run_prints_the_study_and_commands_and_launches_nothing(tmp_path, zeros):
    run_dir = tmp_path / "phase1-minibatch"
    r = _invoke("swarm", "--phase", "1", "--profile", "default", "--run-dir", str(run_dir), "--dry-run")
    assert r.exit_code == 0, r.output
    # A local trial is a process here: the Vertex machine of the team is named nowhere.
    assert "study phase1-minibatch: phase 1, team minibatch (local processes), backend local" in r.output
    assert "g2-standard-8" not in r.output and "NVIDIA" not in r.output
    assert "round primes: fixed design (points) of 5 points" in r.output
    assert "cost estimate:" in r.output and "dry run: nothing was launched" in r.output
    commands = [line for line in r.output.splitlines() if line.startswith("  trainer train")]
    assert len(commands) == 8
    assert "--set 'model.primes=[11,13,17,19]'" in r.output
    assert "--set 'model.primes=<winner's model.primes>'" in r.output
    assert all("--set train.mode=minibatch" in c and "--set train.epochs=16" in c for c in commands)
    assert not run_dir.exists()


def test_dry_run_of_phase2_says_when_it_uses_default_architecture(tmp_path, zeros):
    r = _invoke(
        "swarm",
        "--phase",
        "2",
        "--team",
        "fullbatch",
        "--run-dir",
        str(tmp_path / "p2"),
        "--dry-run",
        "--parallel",
        "3",
        "--max-trials",
        "7",
    )
    assert r.exit_code == 0, r.output
    assert "locked architecture from defaults (no " in r.output
    assert "3 trial(s) at once" in r.output and "up to 7 trials" in r.output
    assert "team fullbatch (local processes)" in r.output and "a2-ultragpu-1g" not in r.output
    assert "/configs/trainer/fullbatch.yaml" in r.output


def test_bad_flags_exit_2():
    assert _invoke("swarm", "--phase", "4").exit_code == 2
    assert _invoke("swarm", "--phase", "2", "--team", "team3").exit_code == 2
    assert _invoke("swarm", "--phase", "2", "--parallel", "0").exit_code == 2
    r = _invoke("swarm", "--phase", "2", "--profile", "nope", "--dry-run")
    assert r.exit_code == 2 and "--profile: 'nope' has no file" in r.output


def _snapshot(now: float) -> dict:
    base = {"baseline_index": 0.111, "baseline_ar": 0.066, "baseline_explicit": 0.014}
    trials = [
        {
            "id": "0",
            "state": "COMPLETED",
            "params": {"loss.gue_nll_weight": 0.03, "loss.gue_mmd_weight": 1.2},
            "value": 0.0121,
            "stderr": 0.0004,
            "metrics": {
                **base,
                "extrapolation_stderr": 0.0004,
                "paired_diff": -0.0019,
                "paired_stderr": 0.0002,
            },
            "started": now - 600,
            "attempts": 1,
        },
        {
            "id": "1",
            "state": "COMPLETED",
            "params": {"loss.gue_nll_weight": 0.5, "loss.gue_mmd_weight": 0.02},
            "value": 0.0300,
            "stderr": 0.001,
            "metrics": {**base, "extrapolation_stderr": 0.001, "paired_diff": 0.016, "paired_stderr": 0.0008},
            "started": now - 500,
            "attempts": 1,
        },
        {
            "id": "2",
            "state": "RUNNING",
            "params": {"loss.gue_nll_weight": 0.01, "loss.gue_mmd_weight": 3.0},
            "value": None,
            "stderr": None,
            "metrics": {},
            "started": now - 125,
            "attempts": 2,
        },
        {
            "id": "3",
            "state": "INFEASIBLE",
            "params": {},
            "value": None,
            "stderr": None,
            "metrics": {},
            "reason": "diverged",
            "attempts": 1,
        },
    ]
    return {
        "study": "phase2-minibatch",
        "phase": 2,
        "team": "minibatch",
        "backend": "local",
        "objective": "extrapolation_error",
        "updated": now - 3,
        "baselines": base,
        "budget": {
            "gpu_hours": 0.35,
            "gpu_hour_cap": 400,
            "cost": 0.35,
            "currency": "USD",
            "machine": "g2-standard-8 + 1 x NVIDIA_L4",
            "price_per_hour": 1.0,
        },
        "trials": trials,
    }


def test_status_text_shows_states_running_age_best_and_cost(tmp_path):
    (tmp_path / "trials.json").write_text(json.dumps(_snapshot(time.time())))
    r = _invoke("status", "--run-dir", str(tmp_path))
    assert r.exit_code == 0, r.output
    assert "completed 2" in r.output and "running 1" in r.output and "infeasible 1" in r.output
    assert "running  trial 2" in r.output and "2m0" in r.output  # age about 2 minutes
    assert (
        "best: 0.01210 ± 0.00040 (trial 0; beats the best baseline explicit formula 0.01400: "
        "paired difference -0.00190 ± 0.00020)"
    ) in r.output
    assert "GPU-hours 0.350 of cap 400; cost estimate 0.35 USD" in r.output
    board = r.output[r.output.index("Leaderboard") :]
    assert board.index("0.01210") < board.index("0.03000")
    assert "NO" in board.splitlines()[-1] or " NO " in board  # trial 1 does not beat the baseline


def test_status_json_is_the_snapshot_plus_a_summary(tmp_path):
    snap = _snapshot(time.time())
    (tmp_path / "trials.json").write_text(json.dumps(snap))
    r = _invoke("status", "--run-dir", str(tmp_path), "--json")
    assert r.exit_code == 0
    out = json.loads(r.output)
    assert out["trials"] == snap["trials"]
    assert out["summary"]["counts"] == {
        "PENDING": 0,
        "RUNNING": 1,
        "COMPLETED": 2,
        "INFEASIBLE": 1,
        "FAILED": 0,
        "STOPPED": 0,
    }
    assert out["summary"]["best"]["ids"] == ["0"]


def test_status_defaults_to_the_latest_run(tmp_path, monkeypatch):
    import os

    for name, age in (("phase1-minibatch", 100), ("phase2-minibatch", 10), ("phase2-fullbatch", 50)):
        (tmp_path / "runs" / name).mkdir(parents=True)
        snap = {**_snapshot(time.time()), "study": name}
        path = tmp_path / "runs" / name / "trials.json"
        path.write_text(json.dumps(snap))
        os.utime(path, (time.time() - age, time.time() - age))
    monkeypatch.chdir(tmp_path)
    r = _invoke("status")
    assert r.exit_code == 0 and r.output.startswith("phase2-minibatch  phase 2")
    monkeypatch.chdir(tmp_path / "runs")
    r = _invoke("status")
    assert r.exit_code == 2 and "no swarm run under runs/" in r.output


def test_status_of_a_missing_run_is_one_line_and_exit_2(tmp_path):
    r = _invoke("status", "--run-dir", str(tmp_path / "nothing"))
    assert r.exit_code == 2
    assert r.output.count("\n") == 1 and "no swarm has run in" in r.output


def test_stop_cancels_running_jobs_and_stops_their_trials(tmp_path, study_db):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.move(study_db, run_dir / "study.db")
    s = settings(run_dir, max_trials=2)
    s = s.model_copy(update={"backend": s.backend.model_copy(update={"env": {"FAKE_HANG_TRIALS": "0,1"}})})
    (run_dir / "swarm.yaml").write_text(yaml.safe_dump(s.model_dump(mode="json")))
    clock = FakeClock()
    tuner = backends.make_tuner(s, s.rounds[0].params())
    runner = backends.make_runner(s, FAKE_TRAINER)
    ctl = Controller(
        s, tuner, runner, backends.read_local_output, lambda i: backends.trial_output_dir(s, i), clock
    )
    ctl.reconcile(s.rounds[0])
    for _ in range(500):
        if [j.state for j in runner.jobs()] == [JobState.RUNNING] * 2:
            break
        time.sleep(0.02)
    r = _invoke("stop", "--run-dir", str(run_dir), "--wait", "5")
    assert r.exit_code == 0, r.output
    assert "asked 2 running job(s) to stop" in r.output and "stopped 2" in r.output
    snap = json.loads((run_dir / "trials.json").read_text())
    assert [t["state"] for t in snap["trials"]] == ["STOPPED", "STOPPED"]
    for _ in range(500):
        if all(j.state is JobState.CANCELLED for j in runner.jobs()):
            break
        time.sleep(0.02)
    assert [j.state for j in runner.jobs()] == [JobState.CANCELLED] * 2
    assert Path(run_dir / "stop-requested").exists()


def test_stop_makes_a_running_controller_exit(tmp_path, study_db, zeros):
    """Real processes: `orchestrator swarm` with hanging trials, then `orchestrator stop`."""
    import os
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.move(study_db, run_dir / "study.db")
    env = dict(os.environ, ZETA_SWARM_TRAINER=" ".join(FAKE_TRAINER), FAKE_HANG_TRIALS="0,1")
    env.pop("ZETA_SWARM_CRASH_AT", None)
    exe = str(Path(sys.executable).with_name("orchestrator"))
    swarm = subprocess.Popen(
        [exe, "swarm", "--phase", "2", "--max-trials", "2", "--run-dir", str(run_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for _ in range(300):
            trials_json = run_dir / "trials.json"
            if (
                trials_json.exists()
                and [t["state"] for t in json.loads(trials_json.read_text())["trials"]] == ["RUNNING"] * 2
            ):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the trials never ran")
        stop = subprocess.run(
            [exe, "stop", "--run-dir", str(run_dir), "--wait", "30"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert stop.returncode == 0, stop.stdout + stop.stderr
        out, _ = swarm.communicate(timeout=30)
    finally:
        if swarm.poll() is None:
            swarm.kill()
    assert swarm.returncode == 0, out
    assert "phase 2 ends early: stopped by `orchestrator stop`" in out and "Leaderboard" in out
    assert [t["state"] for t in json.loads((run_dir / "trials.json").read_text())["trials"]] == [
        "STOPPED"
    ] * 2
