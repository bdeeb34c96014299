"""The shared Tuner and Runner contract suites, run against Vizier and CustomJobs on the fakes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "orchestrator"))  # the contract suites live there

from orchestrator.runners.base import JobSpec  # noqa: E402
from orchestrator.runners.vertex import VertexRunner  # noqa: E402
from orchestrator.tuners.vizier import VizierTuner  # noqa: E402
from runner_contract import RunnerContract  # noqa: E402
from tuner_contract import TunerContract  # noqa: E402

from vertex.fakes import JS, Outcome  # noqa: E402


class TestVizierTuner(TunerContract):
    @pytest.fixture
    def open_tuner(self, vizier, credentials, calls):
        return lambda: VizierTuner(
            "contract-study",
            self.SPACE,
            project="zeta-swarm-test",
            region="us-central1",
            credentials=credentials,
            calls=calls,
        )


class _VertexHarness:
    """Runner-contract harness: behaviour rides in the trainer args, the fake JobService reads it."""

    STUDY = "contract-runs"

    def __init__(self, settings, credentials, calls, clock, job_service):
        self.settings, self.credentials, self.calls, self.clock = settings, credentials, calls, clock
        self.job_service = job_service
        job_service.outcome = self._outcome

    @staticmethod
    def _outcome(job) -> Outcome:
        args = list(job.job_spec.worker_pool_specs[0].container_spec.args)
        behaviour = next((a.split("=", 1)[1] for a in args if a.startswith("fake.behaviour=")), "succeed")
        if behaviour == "fail":
            return Outcome(
                run_s=60,
                final=JS.JOB_STATE_FAILED,
                error="The replica workerpool0-0 exited with a non-zero status of 1.",
            )
        if behaviour == "hang":
            return Outcome(run_s=10**9)
        return Outcome(run_s=60)

    def open_runner(self) -> VertexRunner:
        return VertexRunner(self.settings, self.STUDY, credentials=self.credentials, calls=self.calls)

    def spec(self, trial_id: str, attempt: int = 1, behaviour: str = "succeed") -> JobSpec:
        out = self.settings.trial_dir(self.STUDY, trial_id)
        args = (
            "train",
            "--config",
            "configs/smoke.yaml",
            "--set",
            f"fake.behaviour={behaviour}",
            "--output-dir",
            out,
        )
        return JobSpec(self.STUDY, trial_id, attempt, 2, "minibatch", args, out)

    def tick(self) -> None:
        self.clock.advance(15.0)

    def starts(self, trial_id: str, attempt: int) -> int:
        return len(self.job_service.by_labels(study=self.STUDY, trial=trial_id, attempt=str(attempt)))


class TestVertexRunner(RunnerContract):
    @pytest.fixture
    def harness(self, settings, credentials, calls, clock, job_service, registry):
        return _VertexHarness(settings, credentials, calls, clock, job_service)
