"""`orchestrator stop` and the local runner read time only through their injected clocks: a test
moves the clock instead of waiting, and nothing depends on how fast the machine is."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import yaml
from contracts.backends import LocalHarness
from contracts.runner import wait_for, wait_started
from orchestrator.errors import OrchestratorError
from orchestrator.phases import stop_run
from orchestrator.run_files import SETTINGS_FILE, STOP_FILE, ControllerLock
from orchestrator.runners.base import JobState
from orchestrator.runners.local import LocalRunner
from swarm_helpers import FakeClock, settings


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed trainer's parent is gone; whoever adopts it may not reap)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_stop_gives_up_on_a_controller_that_keeps_running_after_wait_s_of_its_clock(tmp_path, study_db):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.move(study_db, run_dir / "study.db")
    s = settings(run_dir, max_trials=2)
    (run_dir / SETTINGS_FILE).write_text(yaml.safe_dump(s.model_dump(mode="json")))
    clock = FakeClock(start=1_000_000.0, real_s=0.0)
    held = ControllerLock(run_dir)  # a controller that never exits
    held.acquire()
    try:
        with pytest.raises(OrchestratorError, match="did not exit within 60 s"):
            stop_run(run_dir, out=lambda line: None, wait_s=60.0, clock=clock, sleep=clock.sleep)
    finally:
        held.release()
    assert float((run_dir / STOP_FILE).read_text()) == 1_000_000.0
    assert 60.0 <= clock.slept < 60.5  # it looked every 0.2 s of its own clock, then gave up


def test_a_second_cancel_past_the_grace_period_of_the_runners_clock_kills_the_job(tmp_path):
    harness = LocalHarness(tmp_path)
    clock = FakeClock(start=1_000_000.0, real_s=0.0)
    base = harness.open_runner()
    # A grace period the wrapper never reaches by itself: only the runner's clock can pass it.
    runner = LocalRunner(
        base.jobs_dir.parent, "contract", base.trainer_command, grace_s=10_000.0, env=base.env, clock=clock
    )
    try:
        job = runner.launch(harness.spec("s", behaviour="stubborn"))  # ignores SIGTERM
        assert next(j for j in runner.jobs() if j.job_id == job.job_id).created == 1_000_000.0
        wait_for(harness, runner, job.job_id, {JobState.RUNNING})
        wait_started(harness, "s", 1)
        job_dir = runner.jobs_dir / job.job_id
        runner.cancel(job.job_id)  # SIGTERM: the stubborn trainer carries on
        assert json.loads((job_dir / "cancel").read_text())["requested"] == 1_000_000.0
        assert next(j for j in runner.jobs() if j.job_id == job.job_id).state is JobState.RUNNING
        clock.advance(10_001.0)
        runner.cancel(job.job_id)  # past the grace period: SIGKILL to the whole process group
        done = wait_for(harness, runner, job.job_id, {JobState.CANCELLED, JobState.FAILED})
        assert done.state.finished
        assert not _running(json.loads((job_dir / "pid").read_text())["pid"])
    finally:
        for j in runner.jobs():
            if not j.state.finished:
                os.killpg(
                    os.getpgid(
                        json.loads((runner.jobs_dir / j.job_id / "started").read_text())["wrapper_pid"]
                    ),
                    signal.SIGKILL,
                )
