"""The run's study database (RUN_DIR/study.db) as a file: checked before Optuna opens it, backed up
after each completed trial, and never silently replaced under existing jobs.

The study is the one piece of a run directory that cannot be rebuilt (trials.json, events.jsonl and
the status are derived from it and the trial directories), so:
* `check` reads it with the stdlib sqlite3 module, without writing, and says what is wrong with a
  damaged file (empty, not SQLite, corrupted, not an Optuna study) instead of letting SQLAlchemy or
  Optuna fail deep inside;
* `backup` keeps a consistent copy (sqlite3's online backup, so the WAL is included) in
  RUN_DIR/backups/ after each completed trial, at most KEEP of them;
* `check_covers_jobs` refuses a study that is missing or has fewer trials than RUN_DIR/jobs/ has
  trials: a fresh study would hand the old jobs' results to new, different points.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

from orchestrator.reading import DamagedFile

STUDY_FILE = "study.db"
BACKUP_DIR = "backups"
KEEP = 3
_SQLITE_HEADER = b"SQLite format 3\x00"


def study_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / STUDY_FILE


def _connect(path: Path) -> sqlite3.Connection:
    # Read-only: a check never writes, not even the WAL index of a healthy file.
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)


def problem(path: str | os.PathLike) -> str | None:
    """What is wrong with an existing study file, or None when it is a readable Optuna study."""
    path = Path(path)
    if path.is_dir():
        return "is a directory, not a file"
    try:
        with open(path, "rb") as f:
            head = f.read(len(_SQLITE_HEADER))
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if not head:
        return "is empty (0 bytes)"
    if head != _SQLITE_HEADER:
        return "is not an SQLite database"
    try:
        con = _connect(path)
        try:
            check = con.execute("PRAGMA quick_check").fetchone()[0]
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.Error as e:
        return f"is damaged ({e})"
    if check != "ok":
        return f"is damaged (sqlite quick_check: {check})"
    if not {"studies", "trials"} <= tables:
        return "is an SQLite file but not an Optuna study"
    return None


def trial_numbers(path: str | os.PathLike, study: str) -> set[int]:
    """Numbers of the trials of `study` in a healthy study file, WAITING design points excluded."""
    con = _connect(Path(path))
    try:
        rows = con.execute(
            "SELECT t.number FROM trials t JOIN studies s ON t.study_id = s.study_id "
            "WHERE s.study_name = ? AND t.state != 'WAITING'",
            (study,),
        ).fetchall()
    finally:
        con.close()
    return {int(r[0]) for r in rows}


def backups(run_dir: str | os.PathLike) -> list[Path]:
    """The study backups of a run, oldest first."""
    d = Path(run_dir) / BACKUP_DIR
    found = [p for p in d.glob("study-*.db") if re.fullmatch(r"study-\d+\.db", p.name)]
    return sorted(found, key=lambda p: int(p.stem.split("-")[1]))


def restore_hint(run_dir: str | os.PathLike) -> str:
    """What to do about a lost or damaged study: restore the newest backup, else start afresh."""
    saved = backups(run_dir)
    if saved:
        return f"restore the newest backup: `cp {saved[-1]} {study_path(run_dir)}` (then rerun)"
    return f"no backup exists under {Path(run_dir) / BACKUP_DIR}; move {run_dir} aside and start afresh"


def check(run_dir: str | os.PathLike) -> None:
    """Refuse a damaged study file (a missing one is fine here: see `check_covers_jobs`).

    Raises:
        DamagedFile: one line naming the file, what is wrong and the backup to restore.
    """
    path = study_path(run_dir)
    if not path.exists() and not path.is_symlink():
        return
    what = problem(path)
    if what:
        raise DamagedFile(path, what, restore_hint(run_dir))


def check_not_locked(run_dir: str | os.PathLike) -> None:
    """Refuse a study whose write lock another process holds (an open transaction of some other
    program; the controller lock keeps other controllers out), instead of Optuna's internal error
    after its retries. Not part of `check`, which never writes: closing this probe's read-write
    connection checkpoints the WAL into study.db, so only a controller about to write calls it.

    Raises:
        DamagedFile: naming the file and SQLite's message.
    """
    path = study_path(run_dir)
    if not path.is_file():
        return
    con = sqlite3.connect(path, timeout=2, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
    except sqlite3.OperationalError as e:
        raise DamagedFile(
            path, f"is locked by another process ({e})", "close the program that holds it, then rerun"
        ) from None
    finally:
        con.close()


def job_trials(run_dir: str | os.PathLike, study: str) -> set[int]:
    """Trial numbers that have a local job directory under RUN_DIR/jobs/ for `study`."""
    jobs = Path(run_dir) / "jobs"
    if not jobs.is_dir():
        return set()
    pattern = re.compile(rf"{re.escape(study)}-t(\d+)-a\d+")
    return {int(m.group(1)) for d in jobs.iterdir() if (m := pattern.fullmatch(d.name))}


def check_covers_jobs(run_dir: str | os.PathLike, study: str) -> None:
    """Refuse to start when jobs/ holds work of trials the study does not have (study.db lost,
    emptied or replaced): a new study would number fresh points as those trials and adopt their
    results.

    Raises:
        DamagedFile: names the study file, how many trials the jobs hold, and the fix.
    """
    held = job_trials(run_dir, study)
    if not held:
        return
    path = study_path(run_dir)
    have = trial_numbers(path, study) if path.exists() else set()
    beyond = sorted(held - have)
    if beyond:
        state = "is missing" if not path.exists() else f"has {len(have)} trial(s) of study {study}"
        raise DamagedFile(
            path,
            f"{state} but {Path(run_dir) / 'jobs'} holds work of trial(s) "
            f"{', '.join(map(str, beyond[:5]))}{' ...' if len(beyond) > 5 else ''}, which a new study "
            "would mislabel",
            restore_hint(run_dir),
        )


def backup(run_dir: str | os.PathLike, label: int) -> Path | None:
    """Copy the study to RUN_DIR/backups/study-<label>.db (online backup: consistent with the WAL),
    keeping the newest KEEP copies. Returns the copy, or None when there is no study file."""
    src = study_path(run_dir)
    if not src.exists():
        return None
    d = Path(run_dir) / BACKUP_DIR
    d.mkdir(exist_ok=True)
    dest = d / f"study-{label}.db"
    tmp = d / f".study-{label}.db.tmp{os.getpid()}"
    source = sqlite3.connect(src, timeout=60)
    try:
        target = sqlite3.connect(tmp)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()
    os.replace(tmp, dest)
    for old in backups(run_dir)[:-KEEP]:
        old.unlink(missing_ok=True)
    return dest
