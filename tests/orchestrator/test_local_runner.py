"""Local-runner behaviour beyond the shared contract: SIGKILL after the grace period, jobs whose
processes are killed from outside, a trainer that cannot start, and re-adoption by a new runner."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from contracts.backends import LocalHarness
from orchestrator.runners.base import JobState
from orchestrator.runners.local import LocalRunner


def _wait(runner, job_id, states, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = {j.job_id: j for j in runner.jobs()}[job_id]
        if job.state in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"{job_id} never reached {states}")


@pytest.fixture
def harness(tmp_path):
    h = LocalHarness(tmp_path)
    yield h
    for job_dir in (h.run_dir / "jobs").glob("*"):  # never leave a hanging fake behind
        for name in ("pid", "started"):
            try:
                rec = json.loads((job_dir / name).read_text())
                os.kill(rec.get("pid", rec.get("wrapper_pid")), signal.SIGKILL)
            except (OSError, ValueError, TypeError):
                pass


def _started(runner, harness, trial):
    job = runner.launch(harness.spec(trial, behaviour="stubborn" if trial == "s" else "hang"))
    _wait(runner, job.job_id, {JobState.RUNNING})
    deadline = time.monotonic() + 20
    while harness.starts(trial, 1) == 0:
        assert time.monotonic() < deadline, "the fake trainer never started"
        time.sleep(0.05)
    time.sleep(0.3)  # let the fake install its signal handlers
    return job, runner.jobs_dir / job.job_id


def test_a_trainer_ignoring_sigterm_is_killed_after_the_grace_period(harness):
    base = harness.open_runner()
    runner = LocalRunner(
        base.jobs_dir.parent, "contract", trainer_command=base.trainer_command, grace_s=0.5, env=base.env
    )
    job, job_dir = _started(runner, harness, "s")
    t0 = time.monotonic()
    runner.cancel(job.job_id)
    done = _wait(runner, job.job_id, {JobState.CANCELLED}, timeout=10)
    assert 0.4 < time.monotonic() - t0 < 8
    assert json.loads((job_dir / "exit.json").read_text())["code"] == -signal.SIGKILL
    assert "cancelled" in done.detail


def test_a_killed_trainer_is_a_failed_job_with_its_signal(harness):
    runner = harness.open_runner()
    job, job_dir = _started(runner, harness, "k")
    os.kill(json.loads((job_dir / "pid").read_text())["pid"], signal.SIGKILL)
    done = _wait(runner, job.job_id, {JobState.FAILED})
    assert done.detail == "exit code -9 (signal 9)"


def test_a_job_whose_processes_all_died_is_lost_not_running(harness):
    runner = harness.open_runner()
    job, job_dir = _started(runner, harness, "w")
    os.killpg(os.getpgid(json.loads((job_dir / "started").read_text())["wrapper_pid"]), signal.SIGKILL)
    done = _wait(runner, job.job_id, {JobState.FAILED})
    assert done.detail.startswith("lost")
    # A new launch of the same attempt does not start it again; the controller retries as attempt 2.
    runner.launch(harness.spec("w", behaviour="hang"))
    time.sleep(0.5)
    assert harness.starts("w", 1) == 1
    assert _wait(runner, job.job_id, {JobState.FAILED}).detail.startswith("lost")


def test_a_missing_trainer_executable_fails_the_job_with_a_log_line(harness, tmp_path):
    runner = LocalRunner(harness.run_dir, "contract", trainer_command=[str(tmp_path / "no-such-trainer")])
    job = runner.launch(harness.spec("m"))
    done = _wait(runner, job.job_id, {JobState.FAILED})
    log = (harness.run_dir / "trials" / "m" / "attempt-1.log").read_text()
    assert "cannot start" in log and "no-such-trainer" in log
    # The detail carries the log's last line, so the failure's reason reaches trials.json and status.
    assert done.exit_code == 127 and done.detail == f"exit code 127: {log.strip().splitlines()[-1]}"
