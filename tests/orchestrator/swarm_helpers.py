"""Helpers for controller and phase tests: settings on a temporary run dir, a fake clock."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from orchestrator.early_stopping import BaselineSigmaRule, EarlyStopping, MedianRule
from orchestrator.settings_loader import load_settings

# `trainer` for controller tests: the stdlib-only double next to this file. (Not in conftest.py:
# several test folders have one, and `import conftest` would pick whichever was imported last.)
FAKE_TRAINER = [sys.executable, str(Path(__file__).with_name("fake_trainer.py"))]

NO_EARLY_STOP = EarlyStopping(
    baseline_sigma=BaselineSigmaRule(enabled=False), median=MedianRule(enabled=False)
)


class FakeClock:
    """Unix time that moves only when the controller sleeps (or a test says so). Each sleep also
    waits a few real milliseconds so the fake trainer subprocesses make progress."""

    def __init__(self, start: float | None = None, real_s: float = 0.02) -> None:
        self.now = time.time() if start is None else start
        self.real_s = real_s
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds
        time.sleep(self.real_s)


def settings(run_dir: Path, phase: int = 2, **update):
    """Phase settings (smoke profile) on `run_dir`, with fast polling and overrides from `update`."""
    s = load_settings(
        phase,
        profile="smoke",
        run_dir=run_dir,
        max_trials=update.pop("max_trials", 4),
        parallel=update.pop("parallel", 2),
    )
    backend = s.backend.model_copy(update={"poll_s": 1.0, "grace_s": 2.0})
    return s.model_copy(update={"backend": backend, "early_stopping": NO_EARLY_STOP, **update})


def local_controller(s, clock: FakeClock, on_event=None):
    """(controller, tuner, runner) of settings `s` on the local backend with the fake trainer and
    `clock` (the controller sleeps on it)."""
    from orchestrator.controller import Controller

    from orchestrator import backends

    tuner = backends.make_tuner(s, s.rounds[0].params())
    runner = backends.make_runner(s, FAKE_TRAINER)
    ctl = Controller(
        s,
        tuner,
        runner,
        backends.make_output_reader(s),
        lambda i: backends.trial_output_dir(s, i),
        clock,
        clock.sleep,
        on_event=on_event,
    )
    return ctl, tuner, runner
