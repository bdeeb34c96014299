"""The tiny process that owns one local job for its whole life.

Run as a script (`python local_wrapper.py JOB_DIR`, stdlib only so it starts in milliseconds) in
its own session, so it outlives the controller. It

1. takes an exclusive flock on JOB_DIR/lock; the trainer inherits the locked descriptor, so the
   lock is held exactly as long as the wrapper or the trainer lives;
2. under the lock, refuses to run if JOB_DIR/started exists (a job is started at most once, even
   when a crashed controller spawned two wrappers), else writes `started` and then starts the
   trainer with stdout+stderr appended to the job's log file;
3. on SIGTERM (cancel) forwards it to the trainer, which checkpoints and exits, and sends SIGKILL
   after the grace period;
4. writes JOB_DIR/exit.json (exit code, end time, whether it was cancelled) atomically, then exits,
   releasing the lock only after the record is on disk.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time

LOCK_WAIT_S = 10.0


RECORD_RETRY_S = 5.0  # between tries of a record the disk refused (full, read-only for a while)


def _write_json(path: str, obj: dict) -> None:
    """Write a job record atomically; a write the disk refuses leaves no temporary file behind."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _write_record(path: str, obj: dict) -> None:
    """A record the controller must see (exit.json): retried until the disk takes it (a full disk
    frees up), the lock held meanwhile, so the job reads as running, never as lost."""
    while True:
        try:
            return _write_json(path, obj)
        except OSError:
            time.sleep(RECORD_RETRY_S)


def main(job_dir: str) -> int:
    cancelled = threading.Event()
    child: list[subprocess.Popen] = []
    grace = [30.0]

    forwarded = threading.Event()

    def on_term(signum, frame):
        cancelled.set()
        if child and not forwarded.is_set():
            forwarded.set()
            child[0].send_signal(signal.SIGTERM)
            timer = threading.Timer(grace[0], lambda: child[0].poll() is None and child[0].kill())
            timer.daemon = True
            timer.start()

    # Installed first: a cancel that arrives while the wrapper starts must not kill it unrecorded.
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    started_path = os.path.join(job_dir, "started")
    lock_fd = os.open(os.path.join(job_dir, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        # A probe from `jobs()` holds the lock for microseconds; a running twin holds it for the
        # whole job, and then `started` exists and this wrapper has nothing to do.
        if os.path.exists(started_path):
            return 0
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                return 0
            time.sleep(0.02)
    if os.path.exists(started_path):
        return 0
    with open(os.path.join(job_dir, "spec.json")) as f:
        spec = json.load(f)
    # Claim before spawning: if this wrapper dies between the two, the job reads as lost (FAILED)
    # and the controller retries it as a new attempt, rather than a second copy of this one.
    _write_json(started_path, {"wrapper_pid": os.getpid(), "started": time.time()})

    grace[0] = float(spec.get("grace_s", 30.0))
    if cancelled.is_set():  # cancelled before it ever ran
        _write_record(
            os.path.join(job_dir, "exit.json"), {"code": -15, "ended": time.time(), "cancelled": True}
        )
        return 0
    with open(spec["log"], "ab") as log:
        # The job id lets the trainer (and test doubles) tag logs with the attempt they belong to.
        env = dict(os.environ, **spec.get("env", {}), ZETA_SWARM_JOB=os.path.basename(job_dir))
        try:
            proc = subprocess.Popen(
                spec["argv"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                pass_fds=(lock_fd,),
                env=env,
                cwd=spec.get("cwd") or None,
            )
        except OSError as e:  # no such trainer, not executable: a failed job, said in its log
            log.write(f"cannot start {spec['argv'][0]}: {e}\n".encode())
            log.flush()
            _write_record(
                os.path.join(job_dir, "exit.json"), {"code": 127, "ended": time.time(), "cancelled": False}
            )
            return 0
        child.append(proc)
        _write_json(os.path.join(job_dir, "pid"), {"pid": proc.pid, "started": time.time()})
        if cancelled.is_set():  # SIGTERM arrived before the child existed
            on_term(signal.SIGTERM, None)
        code = proc.wait()
    _write_record(
        os.path.join(job_dir, "exit.json"),
        {"code": code, "ended": time.time(), "cancelled": cancelled.is_set()},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
