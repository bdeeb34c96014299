"""The Runner contract. Every backend (local process pool, Vertex AI CustomJob) passes
`tests/contracts/runner.py` (the backends are listed in tests/contracts/backends.py).

A runner turns a JobSpec into a running `trainer` and reports what is running. It keeps no
state the controller needs in memory: `jobs()` reads the truth (process table and job files for
local; `CustomJob.list` by label for Vertex), so a restarted controller sees what its dead
predecessor launched.

Contract:
* `launch(spec)` is idempotent on (spec.study, spec.trial_id, spec.attempt): if a job for that
  key exists in any state, it is returned and nothing new is started. A crash between starting
  the job and recording it must not allow a second start (local: an exclusive lock per attempt;
  Vertex: labels, looked up before create).
* `jobs()` lists every job of this runner's study, all attempts, with its current state.
* `cancel(job_id)` asks a job to stop (SIGTERM first, so the trainer checkpoints); the job then
  reaches CANCELLED (or SUCCEEDED/FAILED if it finished first). Cancelling a finished job is a no-op.
* A job SUCCEEDED when the trainer exited 0 (final.json says completed or diverged); FAILED otherwise
  (non-zero exit, killed, preempted, lost). The controller reads results from `spec.output_dir`.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field


class JobState(str, enum.Enum):
    QUEUED = "QUEUED"  # accepted, not yet running (Vertex QUEUED/PENDING; local: waiting for a slot)
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobSpec:
    study: str  # label value: lowercase letters, digits, '-' and '_' (Vertex label rules)
    trial_id: str
    attempt: int  # 1, 2, ... ; a retry reuses output_dir so the trainer resumes from its checkpoint
    phase: int
    team: str  # "fullbatch" | "minibatch"
    trainer_args: tuple[
        str, ...
    ]  # argv after `trainer`, e.g. ("train", "--config", ..., "--output-dir", ...)
    output_dir: str  # local path or gs:// URL; the same for every attempt of a trial
    labels: dict[str, str] = field(
        default_factory=dict
    )  # extra labels; runners add study/trial/attempt/phase/team


@dataclass
class Job:
    job_id: str  # local: "<study>-t<trial>-a<attempt>"; Vertex: the CustomJob resource name
    trial_id: str
    attempt: int
    state: JobState
    created: float  # unix seconds
    started: float | None = None
    ended: float | None = None
    machine: str = ""  # e.g. "local-cpu", "g2-standard-8 + 1 x NVIDIA_L4"
    detail: str = ""  # why it failed, the exit code, the console link
    output_dir: str = ""
    exit_code: int | None = None  # the trainer's, where the backend knows it (local; Vertex: from its error)


# The trainer's exit codes the controller acts on (docs/contracts.md "Exit codes"): bad input is
# never retried; an error of the environment (disk full, permission) is retried without using up
# one of the trial's retries.
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 75


class Runner(abc.ABC):
    @abc.abstractmethod
    def launch(self, spec: JobSpec) -> Job: ...

    @abc.abstractmethod
    def jobs(self) -> list[Job]: ...

    @abc.abstractmethod
    def cancel(self, job_id: str) -> None: ...

    def preflight(self) -> None:  # noqa: B027 - a hook with nothing to do by default
        """Check what every launch needs (e.g. the trainer image) before any trial is suggested.

        Raises:
            ConfigError: something a launch needs is missing or not allowed; nothing was suggested.
        """
