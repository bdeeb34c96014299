"""Real controller processes for the crash-injection test.

Usage: controller_proc.py RUN_DIR MAX_TRIALS CYCLE

Imports everything once, then forks children one after the other, each running the controller
(phase 2, smoke profile, the fake trainer, fast polling) and armed to die with os._exit; each child
is the restart of the one before. First one life per step in TARGETED, dying at the first step of
that kind: each is reached whatever the timing, because the lives before it leave that step as
the next thing to do (a suggested trial with no job dir, a job dir with no spec, ...) or because
every pass ends with it (the snapshot) or every run reaches it (a completion). Then 2 x CYCLE lives
die at their k-th crash point, k = 1, 2, ..., CYCLE, 1, 2, ..., CYCLE, which crashes through other
positions (which ones depends on timing: the test asserts nothing about them beyond "nothing
lost, nothing duplicated"), and a last, unarmed life runs the swarm to its end. Stops at the first
child that finishes without crashing (a cycle life may find the run already done).

On stderr, in order: each crash line of a child, then the parent's line for that life,
"life <i> target <name or -> k <k> exit <code>". The fake trainer's knobs (FAKE_*) come from the
environment. Forking keeps each life to milliseconds of start-up instead of seconds of imports.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from orchestrator.phases import SwarmRun
from orchestrator.tuners.optuna_study import OptunaTuner
from swarm_helpers import FAKE_TRAINER, settings  # this script's folder is sys.path[0]

from orchestrator import crash_injection

# The steps whose interruption could lose or duplicate a trial, in the order a run first reaches
# them, and the end-of-pass snapshot: one life dies at the first step of each kind.
TARGETED = (
    "suggest",
    "job dir created",
    "job spec written",
    "wrapper spawned",
    "launch",
    "complete",
    "snapshot",
)


def life(run_dir: Path, max_trials: int, k: int, name: str | None) -> None:
    crash_injection.arm(k, name)
    s = settings(run_dir, max_trials=max_trials, parallel=2)
    env = {key: v for key, v in os.environ.items() if key.startswith("FAKE_")}
    s = s.model_copy(
        update={"backend": s.backend.model_copy(update={"poll_s": 0.05, "env": env}), "max_retries": 2}
    )
    SwarmRun(s, trainer_command=FAKE_TRAINER, out=lambda line: None).run()


def main() -> int:
    run_dir, max_trials, cycle = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    # Warm the lazy imports (alembic, the SQLite dialect, the TPE sampler) on a throwaway temporary
    # study, so no connection to the real study crosses a fork and each life starts in milliseconds.
    warm = settings(run_dir, max_trials=max_trials)
    with tempfile.TemporaryDirectory() as tmp:
        tuner = OptunaTuner(f"sqlite:///{tmp}/warm.db", "warm-up", warm.rounds[0].params())
        tuner.suggest(1)
        del tuner
    # A fixed number of lives whatever the load: the targeted ones, two rounds of the cycle, then
    # one unarmed life that runs the swarm to its end (k = 0 disarms).
    schedule = [(1, name) for name in TARGETED] + [(1 + i % cycle, None) for i in range(2 * cycle)]
    schedule.append((0, None))
    for i, (k, name) in enumerate(schedule):
        pid = os.fork()
        if pid == 0:
            try:
                life(run_dir, max_trials, k, name)
            except BaseException as e:  # a real error, not an injected crash
                print(f"life {k} error {e!r}", file=sys.stderr, flush=True)
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        print(f"life {i + 1} target {name or '-'} k {k} exit {code}", file=sys.stderr, flush=True)
        if code != crash_injection.CRASH_EXIT_CODE:
            return code
    return 1  # not reached: the unarmed last life never exits with the crash code


if __name__ == "__main__":
    sys.exit(main())
