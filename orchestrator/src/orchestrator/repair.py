"""`orchestrator repair`: check a run directory and rebuild what is derived, listing every change.

What a run directory holds, and what repair does about each part when it is damaged:

  study.db             the truth; cannot be rebuilt: refused with the newest backup to restore
  swarm.yaml           the settings the run started with; cannot be rebuilt: refused
  controller.lock      not a plain file: set aside (a new one is made)
  jobs/<job>/          a job file unreadable or malformed: the job directory is set aside, so the
                       trial's next attempt runs and resumes from its checkpoint; stray temporary
                       files of interrupted writes are removed
  events.jsonl         a directory, or lines that are not JSON objects: set aside, and the readable
                       lines written back
  trials.json          rebuilt from the study and the jobs
  trials/<id>/         final.json damaged after a successful job: left for the next start, which
                       re-derives it by resuming the trainer on its checkpoint

"Set aside" means moved under RUN_DIR/damaged/<time>/, never deleted. Nothing is changed while a
controller runs on the directory.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator import backends, study_db
from orchestrator.atomic_files import write_text_atomic
from orchestrator.errors import ConfigError
from orchestrator.reading import DamagedFile, read_text
from orchestrator.run_files import (
    EVENTS_FILE,
    LOCK_FILE,
    TRIALS_FILE,
    ControllerBusy,
    ControllerLock,
    read_snapshot,
    snapshot,
    write_snapshot,
)
from orchestrator.trial_outputs import parse_final

DAMAGED_DIR = "damaged"


def _tuner(settings):
    """The whole study (every round), as `orchestrator stop` opens it."""
    from orchestrator.rounds import whole_study

    return backends.make_tuner(settings, *whole_study(settings))


def rebuilt_snapshot(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The trials.json object rebuilt from the study and the jobs, written nowhere (for `status`
    when trials.json is damaged).

    Raises:
        DamagedFile: swarm.yaml or the study is damaged or missing too, so nothing can be rebuilt.
    """
    from orchestrator.phases import load_run_settings

    settings = load_run_settings(run_dir)
    study_db.check(run_dir)
    if not study_db.study_path(run_dir).exists() and settings.backend.name == "local":
        raise DamagedFile(study_db.study_path(run_dir), "not found", study_db.restore_hint(run_dir))
    runner = backends.make_runner(settings)
    return snapshot(
        settings,
        _tuner(settings).trials(),
        runner.jobs(),
        lambda i: backends.trial_output_dir(settings, i),
        time.time(),
    )


class _Aside:
    """Moves damaged things under RUN_DIR/damaged/<time>/, keeping their relative path."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.root = run_dir / DAMAGED_DIR / time.strftime("%Y%m%dT%H%M%S")

    def move(self, path: Path) -> Path:
        dest = self.root / path.relative_to(self.run_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        path.rename(dest)
        return dest


def repair(run_dir: str | os.PathLike, out: Callable[[str], None] = print) -> list[str]:
    """Check RUN_DIR and rebuild what can be rebuilt; returns (and prints) one line per change.

    Raises:
        ConfigError: no swarm has run there.
        ControllerBusy: a controller runs on it (stop it first).
        DamagedFile: study.db or swarm.yaml is damaged (these are not derived; the message says
            which backup to restore).
    """
    from orchestrator.phases import load_run_settings

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: not a directory; pass the run directory of a swarm")
    aside = _Aside(run_dir)
    changes: list[str] = []

    def changed(line: str) -> None:
        changes.append(line)
        out(line)

    lock_path = run_dir / LOCK_FILE
    if lock_path.exists() and not lock_path.is_file():
        changed(f"set aside {lock_path} (not a plain file) -> {aside.move(lock_path)}")
    lock = ControllerLock(run_dir)
    if lock.held_by_other():
        raise ControllerBusy(
            f"a controller is running on {run_dir} (pid {lock.holder()}); stop it first with "
            f"`orchestrator stop --run-dir {run_dir}`"
        )
    settings = load_run_settings(run_dir)
    study_db.check(run_dir)
    lock.acquire()
    try:
        study_db.check_covers_jobs(run_dir, settings.study)
        _repair_jobs(run_dir, settings.study, aside, changed)
        _repair_events(run_dir, aside, changed)
        _rebuild_trials(run_dir, settings, aside, changed)
    finally:
        lock.release()
    if not changes:
        out(f"{run_dir}: nothing to repair (study, settings, jobs, events and trials.json are sound)")
    return changes


def _repair_jobs(run_dir: Path, study: str, aside: _Aside, changed: Callable[[str], None]) -> None:
    from orchestrator.runners.local import LocalRunner

    jobs_dir = run_dir / "jobs"
    if not jobs_dir.is_dir():
        return
    runner = LocalRunner(run_dir, study)
    for d in sorted(jobs_dir.iterdir()):
        if not d.is_dir():
            if ".tmp" in d.name:
                d.unlink()
                changed(f"removed {d} (a temporary file of an interrupted write)")
            continue
        for tmp in sorted(d.glob("*.tmp*")):
            tmp.unlink()
            changed(f"removed {tmp} (a temporary file of an interrupted write)")
        if not (d / "spec.json").exists() and not any(d.iterdir()):
            continue  # a launch cut short: the next launch completes it
        try:
            job = runner._job(d)
        except (DamagedFile, KeyError, ValueError, TypeError) as e:
            problem = e.problem if isinstance(e, DamagedFile) else f"{type(e).__name__}: {e}"
            changed(f"set aside job {d.name} ({problem}) -> {aside.move(d)}; its trial runs again")
            continue
        if job.state.value == "SUCCEEDED" and job.output_dir:
            final = Path(job.output_dir) / "final.json"
            try:
                text = final.read_text() if final.is_file() else None
            except (OSError, UnicodeDecodeError):
                text = "\0"
            if text is not None and parse_final(text) is None:
                changed(f"{final}: damaged; the next `orchestrator swarm` re-derives it from the checkpoint")


def _repair_events(run_dir: Path, aside: _Aside, changed: Callable[[str], None]) -> None:
    path = run_dir / EVENTS_FILE
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_file():
        changed(f"set aside {path} (not a plain file) -> {aside.move(path)}; a new one is started")
        return
    try:
        text = read_text(path, "")
    except DamagedFile:
        text = path.read_bytes().decode("utf-8", "replace")
    good, bad = [], 0
    for line in (text or "").splitlines():
        try:
            ok = isinstance(json.loads(line), dict)
        except json.JSONDecodeError:
            ok = False
        if ok:
            good.append(line)
        elif line.strip():
            bad += 1
    if bad:
        kept = aside.move(path)
        write_text_atomic(path, "".join(f"{line}\n" for line in good))
        changed(f"{path}: dropped {bad} line(s) that were not JSON objects (original -> {kept})")


def _rebuild_trials(run_dir: Path, settings, aside: _Aside, changed: Callable[[str], None]) -> None:
    path = run_dir / TRIALS_FILE
    before: dict | None = None
    problem = "missing"
    if path.exists() or path.is_symlink():
        try:
            before = read_snapshot(run_dir)
        except DamagedFile as e:
            problem = e.problem
            if not path.is_file():
                changed(f"set aside {path} (not a plain file) -> {aside.move(path)}")
    runner = backends.make_runner(settings)
    args = (
        settings,
        _tuner(settings).trials(),
        runner.jobs(),
        lambda i: backends.trial_output_dir(settings, i),
        time.time(),
    )
    if before is None:
        after = write_snapshot(*args)
        changed(f"rebuilt {path} from the study ({problem} before; {len(after['trials'])} trial(s))")
    elif _essence(before) != _essence(snapshot(*args)):
        write_snapshot(*args)
        changed(f"rebuilt {path} from the study (it disagreed with the study and the jobs)")


def _essence(snap: dict) -> list:
    return [(t["id"], t["state"], t["params"], t["value"]) for t in snap["trials"]]
