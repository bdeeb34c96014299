"""The Runner contract as a reusable test suite (orchestrator/runners/base.py says what it promises).

tests/contracts/test_backends.py runs it against every backend in backends.py. To run it elsewhere,
subclass `RunnerContract` (`from contracts.runner import RunnerContract`) and provide the fixture
`harness`, an object with:

  open_runner() -> Runner        a runner over the same jobs every call (a reopened controller)
  spec(trial_id, attempt=1, behaviour="succeed") -> JobSpec
                                 behaviour: "succeed" (exit 0 soon), "fail" (exit 1 soon),
                                 "hang" (runs until cancelled)
  tick() -> None                 let time pass (sleep a little, or advance a fake backend)
  starts(trial_id, attempt) -> int
                                 how many times that job really started (a process, a create call)
"""

from __future__ import annotations

import time

from orchestrator.runners.base import Job, JobState

TIMEOUT_S = 300.0  # a hang guard only: a loaded machine takes longer, it never fails a test


def wait_for(harness, runner, job_id: str, states: set[JobState]) -> Job:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        jobs = {j.job_id: j for j in runner.jobs()}
        if job_id in jobs and jobs[job_id].state in states:
            return jobs[job_id]
        assert time.monotonic() < deadline, f"{job_id} never reached {states}: {jobs.get(job_id)}"
        harness.tick()


def wait_started(harness, trial_id: str, attempt: int) -> None:
    """RUNNING may be reported a moment before the trainer itself is up (local: the wrapper)."""
    deadline = time.monotonic() + TIMEOUT_S
    while harness.starts(trial_id, attempt) == 0:
        assert time.monotonic() < deadline, f"trial {trial_id} attempt {attempt} never started"
        harness.tick()


class RunnerContract:
    def test_a_succeeding_job_reaches_succeeded_with_times(self, harness):
        runner = harness.open_runner()
        spec = harness.spec("1")
        job = runner.launch(spec)
        assert (job.trial_id, job.attempt) == ("1", 1)
        done = wait_for(harness, runner, job.job_id, {JobState.SUCCEEDED})
        assert done.started is not None and done.ended is not None
        assert done.ended >= done.started >= done.created - 1.0
        assert done.output_dir == spec.output_dir

    def test_a_failing_job_reaches_failed_with_a_detail(self, harness):
        runner = harness.open_runner()
        job = runner.launch(harness.spec("2", behaviour="fail"))
        done = wait_for(harness, runner, job.job_id, {JobState.FAILED})
        assert done.detail

    def test_launch_is_idempotent_even_from_a_reopened_runner(self, harness):
        runner = harness.open_runner()
        spec = harness.spec("3", behaviour="hang")
        first = runner.launch(spec)
        second = runner.launch(spec)
        third = harness.open_runner().launch(spec)
        assert first.job_id == second.job_id == third.job_id
        wait_for(harness, runner, first.job_id, {JobState.RUNNING})
        wait_started(harness, "3", 1)
        for _ in range(5):
            harness.tick()
        assert harness.starts("3", 1) == 1
        runner.cancel(first.job_id)
        wait_for(harness, runner, first.job_id, {JobState.CANCELLED, JobState.FAILED})
        assert harness.open_runner().launch(spec).job_id == first.job_id
        harness.tick()
        assert harness.starts("3", 1) == 1

    def test_jobs_lists_every_attempt_and_survives_reopening(self, harness):
        runner = harness.open_runner()
        a1 = runner.launch(harness.spec("4", attempt=1, behaviour="fail"))
        wait_for(harness, runner, a1.job_id, {JobState.FAILED})
        a2 = runner.launch(harness.spec("4", attempt=2))
        wait_for(harness, runner, a2.job_id, {JobState.SUCCEEDED})
        seen = {(j.trial_id, j.attempt): j for j in harness.open_runner().jobs()}
        assert seen[("4", 1)].state is JobState.FAILED
        assert seen[("4", 2)].state is JobState.SUCCEEDED
        assert a1.job_id != a2.job_id

    def test_cancel_stops_a_running_job_and_is_a_noop_when_finished(self, harness):
        runner = harness.open_runner()
        job = runner.launch(harness.spec("5", behaviour="hang"))
        wait_for(harness, runner, job.job_id, {JobState.RUNNING})
        runner.cancel(job.job_id)
        done = wait_for(harness, runner, job.job_id, {JobState.CANCELLED})
        assert done.ended is not None
        runner.cancel(job.job_id)
        assert {j.job_id: j for j in runner.jobs()}[job.job_id].state is JobState.CANCELLED

    def test_cancel_of_a_finished_job_leaves_it_succeeded(self, harness):
        runner = harness.open_runner()
        job = runner.launch(harness.spec("6"))
        wait_for(harness, runner, job.job_id, {JobState.SUCCEEDED})
        runner.cancel(job.job_id)
        assert {j.job_id: j for j in runner.jobs()}[job.job_id].state is JobState.SUCCEEDED

    def test_a_running_job_is_seen_by_a_reopened_runner(self, harness):
        runner = harness.open_runner()
        job = runner.launch(harness.spec("7", behaviour="hang"))
        wait_for(harness, runner, job.job_id, {JobState.RUNNING})
        other = harness.open_runner()
        assert {j.job_id: j for j in other.jobs()}[job.job_id].state is JobState.RUNNING
        other.cancel(job.job_id)
        wait_for(harness, other, job.job_id, {JobState.CANCELLED})
