"""The Runner contract run against the local process pool, with the fake trainer as the job."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from orchestrator.runners.base import JobSpec
from orchestrator.runners.local import LocalRunner
from runner_contract import RunnerContract
from swarm_helpers import FAKE_TRAINER


class LocalHarness:
    def __init__(self, root: Path) -> None:
        self.run_dir = root / "run"
        self.log = root / "spawns.log"

    def open_runner(self) -> LocalRunner:
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


class TestLocalRunner(RunnerContract):
    @pytest.fixture
    def harness(self, tmp_path):
        h = LocalHarness(tmp_path)
        yield h
        for job in h.open_runner().jobs():  # never leave a hanging fake behind
            if not job.state.finished:
                h.open_runner().cancel(job.job_id)
