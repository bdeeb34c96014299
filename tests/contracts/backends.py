"""The one list of backends the contract suites run against, and how to open each (as Optuna's
`optuna.testing.storages` has STORAGE_MODES and a StorageSupplier).

A new tuner or runner joins by adding its name to TUNERS or RUNNERS and a branch to `open_tuner`
or `runner_harness`; tests/contracts/test_backends.py then runs the whole contract against it, and
fails if an implementation in orchestrator.tuners / orchestrator.runners is missing from the list.

The Vertex backends run on the stateful fakes under the real SDK (tests/vertex/fakes.py), with the
fixtures of tests/vertex/conftest.py (imported by tests/contracts/conftest.py).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from orchestrator.designs import latin_hypercube
from orchestrator.runners.base import JobSpec, Runner
from orchestrator.tuners.base import SearchSpace, Tuner
from vertex.fakes import JS, Outcome

FAKE_TRAINER = [sys.executable, str(Path(__file__).parents[1] / "orchestrator" / "fake_trainer.py")]

# name -> the class it tests (test_backends.py checks every implementation is listed)
TUNERS = {
    "optuna": "orchestrator.tuners.optuna_study.OptunaTuner",
    "latin_hypercube": "orchestrator.tuners.optuna_study.FixedDesignTuner",
    "vizier": "orchestrator.tuners.vizier.VizierTuner",
}
# The tuners that hand out a fixed design and then return [] (ExhaustibleDesignContract).
FIXED_DESIGNS = ("latin_hypercube",)
RUNNERS = {
    "local": "orchestrator.runners.local.LocalRunner",
    "vertex": "orchestrator.runners.vertex.VertexRunner",
}


def open_tuner(name: str, space: SearchSpace, request: pytest.FixtureRequest) -> Callable[[], Tuner]:
    """A zero-argument callable that opens the same study every time (the first call creates it)."""
    if name in ("optuna", "latin_hypercube"):
        from orchestrator.tuners.optuna_study import FixedDesignTuner, OptunaTuner, storage_url

        url = storage_url(request.getfixturevalue("study_db"))
        if name == "optuna":
            return lambda: OptunaTuner(url, "contract", space, seed=7, n_startup_trials=3)
        points = latin_hypercube(space, 16, seed=3)
        return lambda: FixedDesignTuner(url, "contract", space, points)
    if name == "vizier":
        from orchestrator.tuners.vizier import VizierTuner

        request.getfixturevalue("vizier")  # the fake Vizier service under the real SDK
        credentials, calls = request.getfixturevalue("credentials"), request.getfixturevalue("calls")
        return lambda: VizierTuner(
            "contract-study",
            space,
            project="zeta-swarm-test",
            region="us-central1",
            credentials=credentials,
            calls=calls,
        )
    raise ValueError(f"no tuner backend {name!r}; add it to TUNERS and here")


def runner_harness(name: str, request: pytest.FixtureRequest):
    """The RunnerContract's harness (tests/contracts/runner.py says what it offers) for a backend."""
    if name == "local":
        return LocalHarness(request.getfixturevalue("tmp_path"))
    if name == "vertex":
        fixtures = ("settings", "credentials", "calls", "clock", "job_service")
        request.getfixturevalue("registry")  # the image the runner resolves
        return VertexHarness(*(request.getfixturevalue(f) for f in fixtures))
    raise ValueError(f"no runner backend {name!r}; add it to RUNNERS and here")


class LocalHarness:
    """The local process pool, with the fake trainer as the job (real subprocesses)."""

    def __init__(self, root: Path) -> None:
        self.run_dir = root / "run"
        self.log = root / "spawns.log"

    def open_runner(self) -> Runner:
        from orchestrator.runners.local import LocalRunner

        return LocalRunner(
            self.run_dir,
            "contract",
            trainer_command=FAKE_TRAINER,
            grace_s=2.0,
            env={"FAKE_TRAINER_LOG": str(self.log)},
        )

    def spec(self, trial_id: str, attempt: int = 1, behaviour: str = "succeed") -> JobSpec:
        out = str(self.run_dir / "trials" / trial_id)
        return JobSpec(
            study="contract",
            trial_id=trial_id,
            attempt=attempt,
            phase=2,
            team="minibatch",
            trainer_args=(
                "train",
                "--config",
                "none.yaml",
                "--set",
                f"fake.behaviour={behaviour}",
                "--set",
                "train.epochs=2",
                "--output-dir",
                out,
            ),
            output_dir=out,
        )

    def tick(self) -> None:
        time.sleep(0.05)

    def starts(self, trial_id: str, attempt: int) -> int:
        if not self.log.exists():
            return 0
        job = f"contract-t{trial_id}-a{attempt}"
        return sum(1 for line in self.log.read_text().splitlines() if line.split()[0] == job)

    def close(self) -> None:
        """Never leave a hanging fake behind."""
        for job in self.open_runner().jobs():
            if not job.state.finished:
                self.open_runner().cancel(job.job_id)


class VertexHarness:
    """CustomJobs on the fake JobService: behaviour rides in the trainer args, the fake reads it."""

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

    def open_runner(self) -> Runner:
        from orchestrator.runners.vertex import VertexRunner

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

    def close(self) -> None:
        pass
