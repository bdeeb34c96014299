"""Real controller processes for the crash-injection test.

Usage: controller_proc.py RUN_DIR MAX_TRIALS CYCLE

Imports everything once, then forks children one after the other, each running the controller
(phase 2, smoke profile, the fake trainer, fast polling) and armed to die with os._exit: first at
the first step of each kind in TARGETED, then at its k-th checkpoint, k = 1, 2, ..., CYCLE, 1, 2, ...;
each child is the restart of the one before. Small k keep every life short, so each position in a
pass is crashed through many times over the run. Stops when a child finishes without crashing and
prints one line per life: "life <k> exit <code>". The fake trainer's knobs (FAKE_*) come from the
environment. Forking keeps each life to milliseconds of start-up instead of seconds of imports.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from orchestrator.phases import SwarmRun  # noqa: E402
from orchestrator.tuners.optuna_study import OptunaTuner  # noqa: E402
from swarm_helpers import FAKE_TRAINER, settings  # noqa: E402

from orchestrator import crash_injection  # noqa: E402

# First one life per kind of step, each dying at the first step of that kind (while the run still
# has all its work ahead), then the cycle of k-th checkpoints.
TARGETED = ("suggest", "job dir created", "job spec written", "wrapper spawned", "launch", "complete")


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
    schedule = [(1, name) for name in TARGETED] + [(1 + i % cycle, None) for i in range(2000)]
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
        print(f"life {i + 1} k {k} exit {code}", flush=True)
        if code != crash_injection.CRASH_EXIT_CODE:
            return code
    return 1


if __name__ == "__main__":
    sys.exit(main())
