"""The local process pool: each job is a `trainer train` subprocess owned by a tiny wrapper.

Layout (one directory per attempt, RUN_DIR/jobs/<study>-t<trial>-a<attempt>/):
  spec.json   the command, log path and labels (written before the wrapper starts)
  spawned     pid of the wrapper the launcher started (so a second launch does not start another)
  lock        flock held by the wrapper and the trainer for the job's whole life
  started     written by the wrapper under the lock, before it starts the trainer
  pid         the trainer's pid
  exit.json   exit code, end time, cancelled flag (written by the wrapper)
  cancel      time of the first cancel request

`jobs()` derives every state from these files and the lock, so a restarted controller re-adopts
running processes and never starts one twice. The number of slots is the controller's business:
`launch` starts at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from orchestrator.atomic_files import write_json_atomic
from orchestrator.crash_injection import crash_point
from orchestrator.errors import ConfigError
from orchestrator.reading import DamagedFile, read_json_object
from orchestrator.runners.base import Job, JobSpec, JobState, Runner

_WRAPPER = Path(__file__).with_name("local_wrapper.py")


@contextlib.contextmanager
def _ctrl_c_held():
    """Hold a Ctrl-C (SIGINT) that arrives during a launch until the launch is recorded, then raise
    it: a launch interrupted between its spec and its wrapper's pid would leave a job that looks
    launched but never starts (tests/robustness signals cases). Only where Python's own handler is
    installed (the main thread, SIGINT not ignored)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    held: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, _frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if held:
        raise KeyboardInterrupt


def default_trainer_command() -> list[str]:
    """$ZETA_SWARM_TRAINER (split like a shell would), else the `trainer` script of this environment."""
    value = os.environ.get("ZETA_SWARM_TRAINER", "")
    if not value:
        return [str(Path(sys.executable).with_name("trainer"))]
    try:
        argv = shlex.split(value)
    except ValueError as e:
        raise ConfigError(f"$ZETA_SWARM_TRAINER {value!r}: {e}") from None
    if not argv or shutil.which(argv[0]) is None:
        raise ConfigError(
            f"$ZETA_SWARM_TRAINER {value!r}: no program {argv[0] if argv else ''!r} to run; "
            "point it at the trainer or unset it"
        )
    return argv


# The keys (and their types) each job file must hold; every file is written atomically, so one
# that is not valid JSON or lacks a key was damaged after the fact, never caught half-written.
_JOB_FILE_KEYS: dict[str, dict] = {
    "spec.json": {"trial_id": (str, int), "attempt": int, "argv": list, "output_dir": str},
    "started": {"started": (int, float)},
    "exit.json": {"code": int, "ended": (int, float)},
    "spawned": {"pid": int},
    "pid": {"pid": int},
    "cancel": {"requested": (int, float)},
}


def _read_json(path: Path) -> dict | None:
    """A job file through the reading layer; None while it does not exist.

    Raises:
        DamagedFile: the file is unreadable or malformed (one line: `orchestrator repair` moves the
            job directory aside, and the trial's next attempt resumes from its checkpoint).
    """
    run_dir = path.parent.parent.parent
    fix = f"run `orchestrator repair --run-dir {run_dir}` to set this job aside (its trial runs again)"
    return read_json_object(path, fix, _JOB_FILE_KEYS.get(path.name))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this very process still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _last_line(log: str | None) -> str:
    """The last non-empty line of a job's log (the trainer's one-line error), at most 300 characters."""
    if not log:
        return ""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def set_values(argv: list[str] | tuple[str, ...]) -> dict[str, str]:
    """The `--set key=value` pairs of a trainer command line."""
    return {
        argv[i + 1].partition("=")[0]: argv[i + 1].partition("=")[2]
        for i in range(len(argv) - 1)
        if argv[i] == "--set"
    }


def _check_same_settings(path: Path, recorded: dict, spec: JobSpec) -> None:
    """Refuse to adopt a job recorded with other `--set` values than the trial now asks for (a study
    replaced or recreated under existing jobs would otherwise take another point's result)."""
    before, now = set_values(recorded["argv"]), set_values(spec.trainer_args)
    differ = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if differ:
        k = differ[0]
        run_dir = path.parent.parent.parent
        raise DamagedFile(
            path,
            f"this job ran trial {spec.trial_id} with {k}={before.get(k, '(unset)')} but the study's "
            f"trial {spec.trial_id} has {k}={now.get(k, '(unset)')} ({len(differ)} value(s) differ), so "
            "study.db does not belong to these jobs",
            f"restore study.db from {run_dir}/backups/, or move {run_dir}/jobs and {run_dir}/trials "
            "aside to start afresh",
        )


class LocalRunner(Runner):
    """Runs jobs as local subprocesses that outlive the controller.

    Args:
        run_dir: the swarm's run directory; job directories go under `run_dir/jobs/`.
        study: the study label; jobs of other studies in the same directory are ignored.
        trainer_command: argv prefix placed before `spec.trainer_args` (default: the venv's `trainer`).
        grace_s: seconds between SIGTERM and SIGKILL on cancel (default 30).
        env: extra environment variables for the trainer.
        machine: what `Job.machine` says (default "local-cpu").
        clock: unix seconds, for the times it records (created, cancel requested) and the cancel
            grace period (injected: tests move it). The wrapper, another process, stamps started
            and ended with the real clock.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        study: str,
        trainer_command: list[str] | None = None,
        grace_s: float = 30.0,
        env: dict[str, str] | None = None,
        machine: str = "local-cpu",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.jobs_dir = Path(run_dir) / "jobs"
        self.study = study
        self.trainer_command = list(trainer_command or default_trainer_command())
        self.grace_s = grace_s
        self.env = dict(env or {})
        self.machine = machine
        self.clock = clock
        self._seen_finished: set[str] = set()  # job ids `jobs()` last reported finished (for `wait`)

    def job_id(self, trial_id: str, attempt: int) -> str:
        return f"{self.study}-t{trial_id}-a{attempt}"

    # -- launch --------------------------------------------------------------------------------
    def launch(self, spec: JobSpec) -> Job:
        with _ctrl_c_held():
            return self._launch(spec)

    def _launch(self, spec: JobSpec) -> Job:
        job_id = self.job_id(spec.trial_id, spec.attempt)
        job_dir = self.jobs_dir / job_id
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        try:
            job_dir.mkdir()
            crash_point("job dir created")
        except FileExistsError:
            pass
        recorded = _read_json(job_dir / "spec.json")
        if recorded is not None:
            _check_same_settings(job_dir / "spec.json", recorded, spec)
        else:
            Path(spec.output_dir).mkdir(parents=True, exist_ok=True)
            write_json_atomic(
                job_dir / "spec.json",
                {
                    "study": spec.study,
                    "trial_id": spec.trial_id,
                    "attempt": spec.attempt,
                    "phase": spec.phase,
                    "team": spec.team,
                    "argv": self.trainer_command + list(spec.trainer_args),
                    "output_dir": spec.output_dir,
                    "log": str(Path(spec.output_dir) / f"attempt-{spec.attempt}.log"),
                    "labels": dict(spec.labels),
                    "env": self.env,
                    "grace_s": self.grace_s,
                    "created": self.clock(),
                },
            )
            crash_point("job spec written")
        if not (job_dir / "started").exists() and not self._wrapper_alive(job_dir):
            proc = subprocess.Popen(
                [sys.executable, str(_WRAPPER), str(job_dir)],
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            crash_point("wrapper spawned")
            write_json_atomic(job_dir / "spawned", {"pid": proc.pid})
        return self._job(job_dir)

    def _wrapper_alive(self, job_dir: Path) -> bool:
        spawned = _read_json(job_dir / "spawned")
        return bool(spawned) and _pid_alive(int(spawned["pid"]))

    # -- reading -------------------------------------------------------------------------------
    @staticmethod
    def _lock_held(job_dir: Path) -> bool:
        try:
            fd = os.open(job_dir / "lock", os.O_RDWR)
        except FileNotFoundError:
            return False
        except OSError as e:
            raise DamagedFile(
                job_dir / "lock",
                f"cannot be opened ({e.strerror})",
                f"run `orchestrator repair --run-dir {job_dir.parent.parent}` to set this job aside",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return True
            raise
        finally:
            os.close(fd)  # closing drops our shared probe lock at once
        return False

    def _job(self, job_dir: Path) -> Job:
        spec = _read_json(job_dir / "spec.json") or {}
        name = job_dir.name
        started = _read_json(job_dir / "started")
        job = Job(
            job_id=name,
            trial_id=str(spec["trial_id"]),
            attempt=int(spec["attempt"]),
            state=JobState.QUEUED,
            created=float(spec.get("created", job_dir.stat().st_mtime)),
            started=float(started["started"]) if started else None,
            machine=self.machine,
            output_dir=spec.get("output_dir", ""),
        )
        exit_rec = _read_json(job_dir / "exit.json")
        if exit_rec is None and started is not None:
            if self._lock_held(job_dir):
                job.state = JobState.RUNNING
                return job
            exit_rec = _read_json(job_dir / "exit.json")  # it may have finished during the probe
            if exit_rec is None:
                job.state = JobState.FAILED
                job.detail = "lost: the wrapper and the trainer are gone without an exit record"
                job.ended = job.started
                return job
        if exit_rec is None:
            job.detail = "starting" if self._wrapper_alive(job_dir) else "not started yet"
            return job
        code = int(exit_rec["code"])
        job.ended = float(exit_rec["ended"])
        job.exit_code = code
        if code == 0:
            job.state = JobState.SUCCEEDED
        elif exit_rec.get("cancelled") or (job_dir / "cancel").exists():
            job.state = JobState.CANCELLED
            job.detail = f"cancelled (exit code {code})"
        else:
            job.state = JobState.FAILED
            last = _last_line(spec.get("log"))
            job.detail = (
                f"exit code {code}"
                + (f" (signal {-code})" if code < 0 else "")
                + (f": {last}" if last else "")
            )
        if job.started is None:
            job.started = job.ended
        return job

    def jobs(self) -> list[Job]:
        if not self.jobs_dir.is_dir():
            return []
        # A directory without spec.json is a launch cut short before anything could start; the
        # controller's next launch of the same key completes it.
        jobs = [self._job(d) for d in sorted(self.jobs_dir.iterdir()) if (d / "spec.json").exists()]
        self._seen_finished = {j.job_id for j in jobs if j.state.finished}
        return [j for j in jobs if j.job_id.startswith(f"{self.study}-t")]

    def wait(self, timeout_s: float) -> None:
        """Sleep up to `timeout_s` seconds, returning as soon as a job exits that the last `jobs()`
        did not see finished, so a freed slot is refilled within ~0.1 s instead of a whole poll
        interval (a few stat calls per tick)."""
        deadline = time.monotonic() + timeout_s
        watch = []
        if self.jobs_dir.is_dir():
            watch = [d / "exit.json" for d in self.jobs_dir.iterdir() if d.name not in self._seen_finished]
        while (left := deadline - time.monotonic()) > 0:
            if any(p.exists() for p in watch):
                return
            time.sleep(min(0.1, left))

    # -- cancel --------------------------------------------------------------------------------
    def cancel(self, job_id: str) -> None:
        job_dir = self.jobs_dir / job_id
        if not job_dir.is_dir():
            raise KeyError(f"no local job {job_id!r} under {self.jobs_dir}")
        job = self._job(job_dir)
        if job.state.finished:
            return
        cancel_file = job_dir / "cancel"
        if not cancel_file.exists():
            write_json_atomic(cancel_file, {"requested": self.clock()})
        now = self.clock()
        first = float((_read_json(cancel_file) or {}).get("requested", now))
        # The wrapper leads the job's process group: SIGTERM reaches it (it records the cancel and
        # escalates) and the trainer (it checkpoints). Past the grace period, kill the whole group.
        sig = signal.SIGKILL if now - first > self.grace_s else signal.SIGTERM
        pgid = self._process_group(job_dir)
        if pgid is not None:
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                pass

    def _process_group(self, job_dir: Path) -> int | None:
        for name in ("started", "spawned"):
            rec = _read_json(job_dir / name)
            if rec:
                pid = int(rec.get("wrapper_pid", rec.get("pid")))
                try:
                    return os.getpgid(pid)
                except ProcessLookupError:
                    continue
        pid_rec = _read_json(job_dir / "pid")
        if pid_rec:
            try:
                return os.getpgid(int(pid_rec["pid"]))
            except ProcessLookupError:
                return None
        return None
