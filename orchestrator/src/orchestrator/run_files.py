"""The run directory's files (docs/contracts.md "Run directory"): trials.json, the stop request, the
controller lock, swarm.yaml and run.json (the run's id). `status` and `report` read only these, never the study database.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.atomic_files import write_json_atomic
from orchestrator.errors import ConfigError, OrchestratorError
from orchestrator.reading import DamagedFile, read_json_object, read_yaml_mapping, repair_hint
from orchestrator.trial_outputs import baselines as baselines_of
from orchestrator.trial_outputs import beats_baseline, trial_vs_baseline

if TYPE_CHECKING:
    from orchestrator.runners.base import Job
    from orchestrator.swarm_settings import SwarmSettings
    from orchestrator.tuners.base import TunerTrial

TRIALS_FILE = "trials.json"
STOP_FILE = "stop-requested"
LOCK_FILE = "controller.lock"
SETTINGS_FILE = "swarm.yaml"
RUN_FILE = "run.json"
EVENTS_FILE = "events.jsonl"
STATES = ("PENDING", "RUNNING", "COMPLETED", "INFEASIBLE", "FAILED", "STOPPED")


class ControllerBusy(OrchestratorError):
    """Another controller is running on this run directory: watch it with `orchestrator status`."""

    exit_code = 4


def trial_state(trial: TunerTrial, job: Job | None) -> str:
    """The trials.json state: the tuner's final state, else RUNNING while its job runs, else PENDING."""
    if trial.state.finished:
        return trial.state.value
    return "RUNNING" if job is not None and job.state.value == "RUNNING" else "PENDING"


def job_hours(job: Job, now: float) -> float:
    """Wall hours a job has run: until it ended, else until now (0 before it starts)."""
    if job.started is None:
        return 0.0
    return ((job.ended if job.ended is not None else max(now, job.started)) - job.started) / 3600.0


def snapshot(
    settings: SwarmSettings,
    trials: Sequence[TunerTrial],
    jobs: Sequence[Job],
    output_dir: Callable[[str], str],
    now: float,
) -> dict[str, Any]:
    """The trials.json object (docs/contracts.md), plus `budget` (GPU-hours and cost so far)."""
    by_trial: dict[str, list[Job]] = {}
    for j in jobs:
        by_trial.setdefault(j.trial_id, []).append(j)
    baselines: dict[str, float] = {}
    rows = []
    gpu_hours = 0.0
    cost = 0.0
    for t in trials:
        attempts = sorted(by_trial.get(t.id, []), key=lambda j: j.attempt)
        latest = attempts[-1] if attempts else None
        machine = settings.team_machines[settings.team_of(t.params)]
        for j in attempts:
            hours = job_hours(j, now)
            gpu_hours += hours * machine.accelerator_count
            cost += hours * machine.price_per_hour
        for key, v in baselines_of(t.metrics).items():  # tune windows
            if key not in baselines or v < baselines[key]:
                baselines[key] = v
        started = [j.started for j in attempts if j.started is not None]
        outcome = trial_vs_baseline(t.metrics)
        rows.append(
            {
                "id": t.id,
                "state": trial_state(t, latest),
                "params": t.params,
                "value": t.value,
                "stderr": t.metrics.get("extrapolation_stderr"),
                "metrics": t.metrics,
                "output_dir": output_dir(t.id),
                "attempts": len(attempts),
                "created": attempts[0].created if attempts else None,
                "started": min(started) if started else None,
                "ended": latest.ended if latest is not None and t.state.finished else None,
                "machine": latest.machine if latest is not None else machine.machine,
                # The latest attempt's job: its id and the runner's detail (on Vertex the console
                # link, after the error when it failed), for `orchestrator status`.
                "job_id": latest.job_id if latest is not None else None,
                "job_detail": latest.detail if latest is not None else None,
                "reason": t.reason,
                "vs_baseline": outcome,
                "beats_baseline": beats_baseline(outcome),
            }
        )
    return {
        "study": settings.study,
        "run_id": settings.run_id,
        "cloud_study": settings.cloud_study,
        "phase": settings.phase,
        "team": settings.team,
        "backend": settings.backend.name,
        "objective": "extrapolation_error",
        "updated": now,
        "baselines": baselines,
        "budget": {
            "gpu_hours": gpu_hours,
            "gpu_hour_cap": settings.gpu_hour_cap,
            "cost": cost,
            "currency": settings.currency,
            "machine": settings.machine,
            "price_per_hour": settings.price_per_hour,
        },
        "trials": rows,
    }


def write_snapshot(
    settings: SwarmSettings,
    trials: Sequence[TunerTrial],
    jobs: Sequence[Job],
    output_dir: Callable[[str], str],
    now: float,
) -> dict[str, Any]:
    """Rewrite RUN_DIR/trials.json atomically and return the object."""
    obj = snapshot(settings, trials, jobs, output_dir, now)
    write_json_atomic(Path(settings.run_dir) / TRIALS_FILE, obj, indent=1)
    return obj


_TRIAL_KEYS: dict[str, Any] = {
    "id": str,
    "state": str,
    "params": dict,
    "value": (int, float, type(None)),
    "metrics": dict,
}


def read_snapshot(run_dir: str | os.PathLike) -> dict[str, Any]:
    """RUN_DIR/trials.json, checked for the shape `status`, the leaderboard and phase 3 rely on.

    Raises:
        ConfigError: the file is missing (no swarm ran there).
        DamagedFile: it is unreadable, not JSON, or not the trials.json object (it is derived state:
            `orchestrator repair` rebuilds it from the study and the trial directories).
    """
    path = Path(run_dir) / TRIALS_FILE
    fix = repair_hint(run_dir)
    snap = read_json_object(path, fix, {"trials": list})
    if snap is None:
        raise ConfigError(f"{path}: not found; no swarm has run in {run_dir} (start one with `make swarm`)")
    for i, t in enumerate(snap["trials"]):
        if not isinstance(t, dict):
            raise DamagedFile(path, f"trials[{i}] is not an object", fix)
        for key, kind in _TRIAL_KEYS.items():
            if not isinstance(t.get(key), kind) or isinstance(t.get(key), bool):
                raise DamagedFile(path, f"trials[{i}].{key} is missing or of the wrong type", fix)
        if t["state"] not in STATES:
            raise DamagedFile(
                path, f"trials[{i}].state {t['state']!r} is not one of {', '.join(STATES)}", fix
            )
    for key in ("baselines", "budget"):
        if not isinstance(snap.get(key, {}), dict):
            raise DamagedFile(path, f"{key!r} is not an object", fix)
    return snap


def read_settings(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """RUN_DIR/swarm.yaml as a mapping (None when no swarm has started there).

    Raises:
        DamagedFile: unreadable, empty, not YAML or not a mapping.
    """
    path = Path(run_dir) / SETTINGS_FILE
    fix = (
        "it records the settings this run started with: restore it from a copy, or move the run "
        "directory aside and start afresh"
    )
    return read_yaml_mapping(path, fix, missing_ok=True)


def new_run_id(now: float | None = None) -> str:
    """A fresh run id: UTC minute of creation + 4 random hex digits, e.g. "20261203-0945-a3f0".

    It is a valid Vertex label value and short enough for every cloud name that carries it.
    """
    stamp = time.strftime("%Y%m%d-%H%M", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(2)}"


def read_run_id(run_dir: str | os.PathLike) -> str | None:
    """The id recorded in RUN_DIR/run.json; None if the run dir has none yet.

    A run dir from before run ids (swarm.yaml but no run.json) gives "": its cloud names carry no id.

    Raises:
        ConfigError: run.json exists but is not a JSON object with a string "run_id".
    """
    path = Path(run_dir) / RUN_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return "" if (Path(run_dir) / SETTINGS_FILE).exists() else None
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the run id ({e})") from e
    if not isinstance(raw, dict) or not isinstance(raw.get("run_id"), str):
        raise ConfigError(f'{path}: expected {{"run_id": "..."}}, the file the first start of this run wrote')
    return raw["run_id"]


def record_run_id(run_dir: str | os.PathLike, run_id: str) -> None:
    """Write RUN_DIR/run.json when the run dir is created; a run dir keeps its first id for good.

    Raises:
        ConfigError: the run dir already holds another run's id (two starts raced on a new dir).
    """
    if not run_id:
        return  # a run dir from before run ids keeps its id-less names
    path = Path(run_dir) / RUN_FILE
    have = read_run_id(run_dir)
    if have is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"run_id": run_id, "created": time.time()}, indent=1)
    elif have != run_id:
        raise ConfigError(f"{path}: this run dir belongs to run {have!r}, not {run_id!r}; start again")


def latest_run_dir(root: str | os.PathLike = "runs") -> Path:
    """The run directory under `root` whose trials.json changed last (what `status` shows by default).

    Raises:
        ConfigError: there is no run under `root`.
    """
    candidates = [p.parent for p in Path(root).glob(f"*/{TRIALS_FILE}")]
    if not candidates:
        raise ConfigError(f"no swarm run under {root}/; start one with `make swarm` or pass --run-dir")
    return max(candidates, key=lambda d: (d / TRIALS_FILE).stat().st_mtime)


class ControllerLock:
    """An exclusive flock on RUN_DIR/controller.lock for the controller's lifetime: one controller
    per run directory. The kernel drops it when the process dies, however it dies."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise DamagedFile(
                self.path,
                f"cannot be opened ({e.strerror})",
                f"remove it (`orchestrator repair --run-dir {self.path.parent}` moves it aside)",
            ) from None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            os.close(fd)
            raise ControllerBusy(
                f"a controller is already running on {self.path.parent} (pid {self.holder()}); "
                "watch it with `orchestrator status` or stop it with `orchestrator stop`"
            ) from e
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {time.time()}\n".encode())
        self.fd = fd

    def holder(self) -> str:
        try:
            return self.path.read_text().split()[0]
        except (OSError, IndexError, UnicodeDecodeError):
            return "?"

    def held_by_other(self) -> bool:
        """Whether some process holds the lock now (a running controller)."""
        if not self.path.exists():
            return False
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
