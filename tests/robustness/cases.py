"""The robustness table (issue 17): bad inputs and damaged run directories, each tried against the
real `trainer` and `orchestrator` CLIs as subprocesses.

A case builds what it needs in a fresh directory (a copy of a tiny fake-trainer swarm's run
directory, a copy of configs/, a small real dataset), runs one command and is judged:

  clean        the expected exit code, at most one line on stderr (exactly one for an error), no
               traceback, the run directory unchanged where nothing should change, and the
               scenario's own data check passed
  traceback    a Python traceback on stderr
  accepted     exit 0 where the input is wrong (silently accepted)
  data         a scenario lost, mislabelled or repeated a trial (its check names which)
  unclean      anything else: another exit code, several lines, a changed tree

`tests/robustness/test_cli_robustness.py` asserts every case is clean; `table.py` prints the table.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BIN = Path(sys.executable).parent
DOUBLE = [sys.executable, str(HERE / "trainer_double.py")]
SMOKE = str(REPO / "configs" / "smoke.yaml")
ZEROS = 120_000  # configs/smoke.yaml reads zeros up to ~109,000
RESUME = ["swarm", "--phase", "2", "--profile", "smoke", "--max-trials", "2", "--parallel", "2"]
JOB = "phase2-minibatch-t0-a1"


@dataclass
class Workspace:
    """One case's directory, with lazily built copies of the shared fixtures."""

    root: Path
    base_run: Path
    dataset: Path
    env: dict[str, str] = field(default_factory=dict)
    cleanups: list[Callable[[], None]] = field(default_factory=list)  # run after the command

    @property
    def run_dir(self) -> Path:
        d = self.root / "phase2-minibatch"
        if not d.exists():
            shutil.copytree(self.base_run, d, symlinks=True)
            _rebase(d, self.base_run)
        return d

    def configs(self) -> Path:
        d = self.root / "configs"
        if not d.exists():
            shutil.copytree(REPO / "configs", d)
            self.env["ZETA_SWARM_CONFIGS"] = str(d)
        return d


@dataclass
class Case:
    name: str
    group: str
    setup: Callable[[Workspace], list[str]]  # -> argv ("trainer ..." or "orchestrator ...")
    expect: int = 2
    changes: bool = False  # the command may change the run directory
    note: bool = False  # exit 0 with exactly one line (a note) on stderr
    chatty: bool = False  # exit 0 whose stderr carries progress lines (report, compare)
    check: Callable[[Workspace, subprocess.CompletedProcess], str | None] | None = None
    timeout: float = 120.0
    known: str = ""  # a known failure in a file this suite's owner may not change: where and what


@dataclass
class Outcome:
    case: Case
    kind: str  # clean, traceback, accepted, data, unclean
    detail: str
    rc: int
    stderr: str


# -- fixtures --------------------------------------------------------------------------------------
def build_dataset(path: Path) -> Path:
    """The first ZEROS Odlyzko zeros as a dataset, written with the production writer."""
    from trainer.data.dataset import write_dataset
    from trainer.data.odlyzko import TABLE_ACCURACY, load_table

    if not (path / "manifest.json").exists():
        write_dataset(
            path,
            load_table(ZEROS),
            source="odlyzko",
            first_index=1,
            abs_accuracy=TABLE_ACCURACY,
            params={"count": ZEROS},
        )
    return path


def short_dataset(path: Path) -> Path:
    """The first 20,000 zeros: a real dataset too short for configs/smoke.yaml's windows."""
    from trainer.data.dataset import write_dataset
    from trainer.data.odlyzko import TABLE_ACCURACY, load_table

    write_dataset(path, load_table(20_000), source="odlyzko", first_index=1, abs_accuracy=TABLE_ACCURACY)
    return path


def build_base_run(run_dir: Path, dataset: Path) -> Path:
    """A finished two-trial phase-2 smoke swarm of the fake trainer (in-process, about a second)."""
    sys.path.insert(0, str(REPO / "tests" / "orchestrator"))
    from orchestrator.phases import SwarmRun
    from swarm_helpers import FAKE_TRAINER, settings

    old = os.environ.get("ZETA_SWARM_DATA")
    os.environ["ZETA_SWARM_DATA"] = str(dataset)
    try:
        s = settings(run_dir, max_trials=2, parallel=2)
        SwarmRun(
            s, trainer_command=FAKE_TRAINER, sleep=lambda _s: time.sleep(0.02), out=lambda _l: None
        ).run()
    finally:
        if old is None:
            os.environ.pop("ZETA_SWARM_DATA", None)
        else:
            os.environ["ZETA_SWARM_DATA"] = old
    return run_dir


def _rebase(run_dir: Path, old: Path) -> None:
    """Point a copied run's recorded paths (job specs, trials.json) at the copy."""
    for f in [*run_dir.glob("jobs/*/spec.json"), run_dir / "trials.json"]:
        if f.is_file():
            f.write_text(f.read_text().replace(str(old.resolve()), str(run_dir.resolve())))


def tree(path: Path) -> dict[str, tuple]:
    """Every entry under `path`: kind, size, mode, mtime (what "unchanged" compares). Not data, so
    not compared: SQLite's shared-memory index and an empty WAL (any reader of the study makes them)
    and the controller lock's content (the pid of whoever last took it)."""
    out = {}
    for p in sorted(path.rglob("*")):
        st = p.lstat()
        if p.name.endswith("-shm") or (p.name.endswith("-wal") and st.st_size == 0):
            continue
        if p.name == "controller.lock" and p.is_file():
            out[str(p.relative_to(path))] = (False, st.st_mode)
            continue
        out[str(p.relative_to(path))] = (p.is_dir(), st.st_size, st.st_mode, st.st_mtime_ns)
    return out


# -- running ------------------------------------------------------------------------------------
EXES = {
    "trainer": [str(BIN / "trainer")],
    "orchestrator": [str(BIN / "orchestrator")],
    # the orchestrator with a signal sent to itself at one crash point
    "orchestrator-signalled": [sys.executable, str(HERE / "orchestrator_signalled.py")],
}


def case_env(ws: Workspace) -> dict[str, str]:
    """The environment of a case's command: this one without the suite's own variables, the
    case's dataset and the trainer double, then the case's own (a value "<unset>" removes one)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ZETA_SWARM_", "FAKE_", "ROBUST_"))},
        "ZETA_SWARM_DATA": str(ws.dataset),
        "ZETA_SWARM_TRAINER": " ".join(DOUBLE),
        "OPENBLAS_NUM_THREADS": "1",
        **ws.env,
    }
    return {k: v for k, v in env.items() if v is not None and v != "<unset>"}


def run_case(case: Case, ws: Workspace) -> Outcome:
    argv = case.setup(ws)
    run_dir = ws.root / "phase2-minibatch"
    before = tree(run_dir) if run_dir.exists() else None
    try:
        proc = subprocess.run(
            [*EXES[argv[0]], *argv[1:]], env=case_env(ws), cwd=ws.root, capture_output=True, text=True,
            timeout=case.timeout,
        )  # fmt: skip
    finally:
        for cleanup in ws.cleanups:
            cleanup()
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    if "Traceback" in proc.stderr:
        return Outcome(case, "traceback", lines[-1] if lines else "", proc.returncode, proc.stderr)
    if case.check is not None:  # before "accepted": a report over a run that exits 0 lost the run
        problem = case.check(ws, proc)
        if problem:
            return Outcome(case, "data", problem, proc.returncode, proc.stderr)
    if case.expect != 0 and proc.returncode == 0:
        return Outcome(case, "accepted", "exit 0", proc.returncode, proc.stderr)
    if proc.returncode != case.expect:
        return Outcome(
            case, "unclean", f"exit {proc.returncode}, expected {case.expect}", proc.returncode, proc.stderr
        )
    want_lines = 1 if case.expect != 0 or case.note else 0
    if len(lines) != want_lines and not case.chatty:
        return Outcome(case, "unclean", f"{len(lines)} stderr lines", proc.returncode, proc.stderr)
    if before is not None and not case.changes and tree(run_dir) != before:
        changed = sorted(set(tree(run_dir).items()) ^ set(before.items()))
        return Outcome(case, "unclean", f"run dir changed: {changed[:3]}", proc.returncode, proc.stderr)
    return Outcome(case, "clean", lines[0] if lines else "", proc.returncode, proc.stderr)


# -- case helpers ----------------------------------------------------------------------------------
def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


def _make_dir(path: Path) -> None:
    if path.exists():
        path.unlink()
    path.mkdir()


BINARY = b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary"


def damage(
    rel: str, data: str | bytes, argv: Callable[[Workspace], list[str]] | None = None
) -> Callable[[Workspace], list[str]]:
    """Write `data` over RUN_DIR/rel, then run `argv(ws)` (default: resume the swarm)."""

    def setup(ws: Workspace) -> list[str]:
        _write(ws.run_dir / rel, data(ws) if callable(data) else data)
        return ["orchestrator", *(argv(ws) if argv else [*RESUME, "--run-dir", str(ws.run_dir)])]

    return setup


def on(command: str) -> Callable[[Workspace], list[str]]:
    return lambda ws: [command, "--run-dir", str(ws.run_dir)]


def damage_dir(rel: str, argv: list[str] | None = None) -> Callable[[Workspace], list[str]]:
    def setup(ws: Workspace) -> list[str]:
        _make_dir(ws.run_dir / rel)
        return ["orchestrator", *(argv or [*RESUME, "--run-dir", str(ws.run_dir)])]

    return setup


status = on("status")


def config_case(rel: str, data: str | bytes, phase: str = "2") -> Callable[[Workspace], list[str]]:
    def setup(ws: Workspace) -> list[str]:
        _write(ws.configs() / rel, data)
        return ["orchestrator", "swarm", "--phase", phase, "--profile", "smoke", "--dry-run",
                "--run-dir", str(ws.root / "dry")]  # fmt: skip

    return setup


def edit_config(rel: str, edit: Callable[[str], str]) -> Callable[[Workspace], list[str]]:
    def setup(ws: Workspace) -> list[str]:
        path = ws.configs() / rel
        path.write_text(edit(path.read_text()))
        return ["orchestrator", "swarm", "--phase", "2", "--profile", "smoke", "--dry-run",
                "--run-dir", str(ws.root / "dry")]  # fmt: skip

    return setup


def lock_case(winners: dict | bytes) -> Callable[[Workspace], list[str]]:
    def setup(ws: Workspace) -> list[str]:
        import yaml

        body = winners if isinstance(winners, bytes) else yaml.safe_dump({"phase": 1, "winners": winners})
        _write(ws.root / "phase1-minibatch" / "lock.yaml", body)
        return ["orchestrator", "swarm", "--phase", "2", "--profile", "smoke", "--dry-run",
                "--run-dir", str(ws.root / "phase2-minibatch")]  # fmt: skip

    return setup


def trainer(*args: str) -> Callable[[Workspace], list[str]]:
    def setup(ws: Workspace) -> list[str]:
        return ["trainer", *(a.replace("{root}", str(ws.root)) for a in args)]

    return setup


def _file_in_root(name: str, then: Callable[[Workspace], list[str]]) -> Callable[[Workspace], list[str]]:
    def setup(ws: Workspace) -> list[str]:
        _write(ws.root / name, "a file\n")
        return then(ws)

    return setup


def _study_trials(run_dir: Path) -> list[tuple[int, str, dict]]:
    con = sqlite3.connect(run_dir / "study.db")
    try:
        rows = con.execute("SELECT trial_id, number, state FROM trials ORDER BY number").fetchall()
        params = con.execute("SELECT trial_id, param_name, param_value FROM trial_params").fetchall()
        attrs = con.execute("SELECT trial_id, key, value_json FROM trial_user_attributes").fetchall()
    finally:
        con.close()
    by_id: dict[int, dict] = {}
    for tid, name, value in params:
        by_id.setdefault(tid, {})[name] = value
    dup = {tid for tid, key, value in attrs if key == "zs_state" and json.loads(value) == "DUPLICATE"}
    return [(n, state, by_id.get(tid, {})) for tid, n, state in rows if tid not in dup]


# -- scenario checks -------------------------------------------------------------------------------
def no_repeats(ws: Workspace, proc) -> str | None:
    points = [tuple(sorted(p.items())) for _n, _s, p in _study_trials(ws.run_dir)]
    if len(set(points)) != len(points):
        return f"repeated: {len(points) - len(set(points))} trial(s) repeat an earlier point"
    if len(points) != 4:
        return f"lost: {len(points)} trials in the study, expected 4"
    return None


def run_dir_intact(ws: Workspace, proc) -> str | None:
    for name in ("study.db", "trials.json", "jobs", "trials", "events.jsonl", "swarm.yaml"):
        if not (ws.run_dir / name).exists():
            return f"lost: {name} is gone"
    return None


def trial_state(trial: str, state: str, attempts: int | None = None) -> Callable:
    def check(ws: Workspace, proc) -> str | None:
        snap = json.loads((ws.run_dir / "trials.json").read_text())
        t = next((t for t in snap["trials"] if t["id"] == trial), None)
        if t is None:
            return f"lost: trial {trial} is not in trials.json"
        if t["state"] != state:
            return f"lost: trial {trial} is {t['state']} ({t.get('reason')}), expected {state}"
        if attempts is not None and t["attempts"] != attempts:
            return f"trial {trial} ran {t['attempts']} attempt(s), expected {attempts}"
        return None

    return check


def extend(ws: Workspace) -> list[str]:
    run = ws.run_dir
    return ["orchestrator", "swarm", "--phase", "2", "--profile", "smoke", "--max-trials", "4",
            "--parallel", "2", "--run-dir", str(run)]  # fmt: skip


def fresh_swarm(**env: str) -> Callable[[Workspace], list[str]]:
    def setup(ws: Workspace) -> list[str]:
        ws.env.update(env)
        return ["orchestrator", "swarm", "--phase", "2", "--profile", "smoke", "--max-trials", "2",
                "--parallel", "2", "--run-dir", str(ws.root / "phase2-minibatch")]  # fmt: skip

    return setup


def drop_study(truncate: bool) -> Callable[[Workspace], list[str]]:
    def setup(ws: Workspace) -> list[str]:
        db = ws.run_dir / "study.db"
        for f in (db, db.with_name("study.db-wal"), db.with_name("study.db-shm")):
            f.unlink(missing_ok=True)
        if truncate:
            db.write_bytes(b"")
        return ["orchestrator", *RESUME[:6], "4", *RESUME[7:], "--run-dir", str(ws.run_dir)]

    return setup


def truncated_study(ws: Workspace) -> list[str]:
    db = ws.run_dir / "study.db"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])
    for f in (db.with_name("study.db-wal"), db.with_name("study.db-shm")):
        f.unlink(missing_ok=True)
    return ["orchestrator", *RESUME, "--run-dir", str(ws.run_dir)]


def report_into(where: Callable[[Workspace], Path]) -> Callable[[Workspace], list[str]]:
    def setup(ws: Workspace) -> list[str]:
        return ["orchestrator", "report", "--run-dir", str(ws.run_dir), "--out", str(where(ws)), "--no-plots"]

    return setup


def ctrl_c(ws: Workspace) -> list[str]:
    return ["orchestrator", "swarm", "--phase", "2", "--profile", "smoke", "--max-trials", "2",
            "--parallel", "2", "--run-dir", str(ws.root / "phase2-minibatch")]  # fmt: skip


def _both_running(run_dir: Path) -> bool:
    if len(list(run_dir.glob("jobs/*/pid"))) < 2:
        return False
    try:
        trials = json.loads((run_dir / "trials.json").read_text())["trials"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return sum(t.get("state") == "RUNNING" for t in trials) >= 2


def run_ctrl_c(ws: Workspace) -> Outcome:
    """Ctrl-C on a controller whose two trials hang: it must say what it leaves running."""
    case = CTRL_C
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ZETA_SWARM_", "FAKE_", "ROBUST_"))},
        "ZETA_SWARM_DATA": str(ws.dataset),
        "ZETA_SWARM_TRAINER": " ".join(DOUBLE),
        "FAKE_HANG_TRIALS": "0,1",
    }
    argv = ctrl_c(ws)
    run_dir = ws.root / "phase2-minibatch"
    # A shell without job control starts background jobs with SIGINT ignored, and Python keeps an
    # ignored SIGINT ignored: give the controller the default disposition a terminal gives it.
    proc = subprocess.Popen(
        [str(BIN / "orchestrator"), *argv[1:]], env=env, cwd=ws.root, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + case.timeout
        # Interrupt the controller in its wait between passes: both trials spawned and the pass
        # that launched them written to trials.json (a signal that lands inside a spawn is another case).
        while not _both_running(run_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(
            [str(BIN / "orchestrator"), "stop", "--run-dir", str(run_dir), "--wait", "30"],
            env=env, capture_output=True, timeout=120,
        )  # fmt: skip
    lines = [line for line in err.splitlines() if line.strip()]
    if "Traceback" in err:
        return Outcome(case, "traceback", lines[-1] if lines else "", proc.returncode, err)
    if proc.returncode != 130 or len(lines) != 1 or "keep running (trial 0, 1)" not in lines[0]:
        return Outcome(case, "unclean", f"exit {proc.returncode}: {lines[-1:]}", proc.returncode, err)
    return Outcome(case, "clean", lines[0], proc.returncode, err)


# -- the table ---------------------------------------------------------------------------------------
ORCH_FLAGS = [
    Case("status --interval -1", "flags", lambda ws: ["orchestrator", "status", "--watch", "--interval", "-1", "--run-dir", str(ws.run_dir)]),
    Case("status --interval nan", "flags", lambda ws: ["orchestrator", "status", "--watch", "--interval", "nan", "--run-dir", str(ws.run_dir)]),
    Case("swarm --phase 4", "flags", lambda ws: ["orchestrator", "swarm", "--phase", "4"]),
    Case("swarm --parallel 0", "flags", lambda ws: ["orchestrator", "swarm", "--phase", "2", "--parallel", "0"]),
    Case("status of a missing run dir", "flags", lambda ws: ["orchestrator", "status", "--run-dir", str(ws.root / "nope")]),
    Case("status from ZETA_SWARM_RUN_DIR (missing)", "flags", lambda ws: (ws.env.update(ZETA_SWARM_RUN_DIR=str(ws.root / "nope")), ["orchestrator", "status"])[1]),
    Case("repair of a missing run dir", "flags", lambda ws: ["orchestrator", "repair", "--run-dir", str(ws.root / "nope")]),
    Case("report --out the run dir itself", "data loss", report_into(lambda ws: ws.run_dir), check=run_dir_intact),
    Case("report --out the parent of runs", "data loss", report_into(lambda ws: ws.root), check=run_dir_intact),
    Case("report of a list-shaped trials.json", "run dir", damage("trials.json", "[1]", lambda ws: ["report", "--run-dir", str(ws.run_dir), "--out", str(ws.root / "r"), "--no-plots"])),
    Case("report of a garbage metrics.jsonl", "run dir", damage("trials/0/metrics.jsonl", "garbage\n\x00\n", lambda ws: ["report", "--run-dir", str(ws.run_dir), "--out", str(ws.root / "r"), "--no-plots"])),
    Case("report --out a directory that is not a report", "data loss", report_into(lambda ws: (ws.root / "notes").mkdir() or _write(ws.root / "notes" / "todo.txt", "x").parent)),
]  # fmt: skip

CONFIG_CASES = [
    Case("phase2.yaml empty", "configs", config_case("phases/phase2.yaml", "")),
    Case("phase2.yaml binary", "configs", config_case("phases/phase2.yaml", BINARY)),
    Case("phase2.yaml a list", "configs", config_case("phases/phase2.yaml", "- 1\n- 2\n")),
    Case("phase2.yaml duplicated key", "configs", edit_config("phases/phase2.yaml", lambda t: t + "max_retries: 5\n")),
    Case("phase2.yaml not YAML", "configs", config_case("phases/phase2.yaml", "rounds: [\n")),
    Case("profile empty", "configs", config_case("profiles/smoke.yaml", "")),
    Case("profile binary", "configs", config_case("profiles/smoke.yaml", BINARY)),
    Case("budgets.yaml binary", "configs", config_case("budgets.yaml", BINARY)),
    Case("budgets.yaml empty", "configs", config_case("budgets.yaml", "")),
    Case("team file empty", "configs", config_case("teams/minibatch.yaml", "")),
    Case("team file a string", "configs", config_case("teams/minibatch.yaml", "just words\n")),
    Case("backend file binary", "configs", config_case("backends/local.yaml", BINARY)),
    Case("profile: misspelled trainer key", "validation", edit_config("profiles/smoke.yaml", lambda t: t.replace("train.cpu_threads: 1", "train.cpu_threads: 1\n  loss.gue_nll_weigth: 0.1"))),
    Case("profile: negative weight decay", "validation", edit_config("profiles/smoke.yaml", lambda t: t.replace("train.cpu_threads: 1", "train.cpu_threads: 1\n  optim.weight_decay: -1.0"))),
    Case("profile: dataset does not exist", "validation", lambda ws: (ws.env.update(ZETA_SWARM_DATA=str(ws.root / "no-zeros")), config_case("budgets.yaml", (REPO / "configs" / "budgets.yaml").read_text())(ws))[1]),
    Case("dataset too short for the windows", "validation", lambda ws: (ws.env.update(ZETA_SWARM_DATA=str(short_dataset(ws.root / "short"))), config_case("budgets.yaml", (REPO / "configs" / "budgets.yaml").read_text())(ws))[1]),
    Case("phase 2 knob range out of the trainer's", "validation", edit_config("phases/phase2.yaml", lambda t: t.replace("low: 1.0e-3", "low: -1.0", 1).replace("log: true", "log: false", 1))),
    Case("phase2.yaml: an infinite fixed weight", "validation", edit_config("phases/phase2.yaml", lambda t: t.replace("loss.mse_weight: 1.0", "loss.mse_weight: .inf"))),
    Case("lock.yaml non-prime primes", "validation", lock_case({"model.primes": [2, 4, 6], "optim.lr": 1e-3, "optim.scheduler": "cosine"})),
    Case("lock.yaml negative learning rate", "validation", lock_case({"model.primes": [2, 3], "optim.lr": -0.1, "optim.scheduler": "cosine"})),
    Case("lock.yaml binary", "validation", lock_case(BINARY)),
    Case("lock.yaml without winners", "validation", lock_case({})),
]  # fmt: skip

RUN_DIR_CASES = [
    Case("trials.json a list (status rebuilds)", "run dir", damage("trials.json", "[1, 2]", status), expect=0, note=True),
    Case("trials.json binary (status rebuilds)", "run dir", damage("trials.json", BINARY, status), expect=0, note=True),
    Case("trials.json a string (status rebuilds)", "run dir", damage("trials.json", '"x"', status), expect=0, note=True),
    Case("trials.json without state (status rebuilds)", "run dir", lambda ws: _write(ws.run_dir / "trials.json", json.dumps({"trials": [{"id": "0"}]})) and ["orchestrator", *status(ws)], expect=0, note=True),
    Case("trials.json a directory (status rebuilds)", "run dir", lambda ws: (shutil.rmtree(ws.run_dir / "trials.json", ignore_errors=True), (ws.run_dir / "trials.json").unlink(), (ws.run_dir / "trials.json").mkdir(), ["orchestrator", *status(ws)])[-1], expect=0, note=True),
    Case("trials.json and study.db both gone", "run dir", lambda ws: ((ws.run_dir / "study.db").unlink(), _write(ws.run_dir / "trials.json", "[]"), ["orchestrator", *status(ws)])[-1]),
    Case("study.db garbage (swarm)", "run dir", damage("study.db", BINARY)),
    Case("study.db garbage (stop)", "run dir", damage("study.db", b"garbage" * 100, on("stop"))),
    Case("study.db garbage (repair names the backup)", "run dir", damage("study.db", b"garbage" * 100, on("repair"))),
    Case("study.db truncated", "run dir", truncated_study),
    Case("study.db emptied, jobs remain", "data loss", drop_study(truncate=True)),
    Case("study.db deleted, jobs remain", "data loss", drop_study(truncate=False)),
    Case("swarm.yaml garbage", "run dir", damage("swarm.yaml", BINARY)),
    Case("swarm.yaml a list (stop)", "run dir", damage("swarm.yaml", "- a\n", on("stop"))),
    Case("swarm.yaml wrong keys (repair)", "run dir", damage("swarm.yaml", "phase: two\n", on("repair"))),
    Case("events.jsonl a directory", "run dir", damage_dir("events.jsonl")),
    Case("controller.lock a directory", "run dir", damage_dir("controller.lock")),
    Case("job spec garbage", "run dir", damage(f"jobs/{JOB}/spec.json", "{not json")),
    Case("job spec a list", "run dir", damage(f"jobs/{JOB}/spec.json", "[1]")),
    Case("job spec without trial_id", "run dir", damage(f"jobs/{JOB}/spec.json", '{"attempt": 1}')),
    Case("exit file code 'zero'", "run dir", damage(f"jobs/{JOB}/exit.json", '{"code": "zero", "ended": 1}')),
    Case("exit file binary", "run dir", damage(f"jobs/{JOB}/exit.json", BINARY)),
    Case("job 'started' garbage", "run dir", damage(f"jobs/{JOB}/started", "nope")),
    Case("repair sets a damaged job aside", "repair", damage(f"jobs/{JOB}/exit.json", BINARY, on("repair")), expect=0, changes=True),
    Case("repair drops garbage event lines", "repair", damage("events.jsonl", lambda ws: (ws.run_dir / "events.jsonl").read_text() + "garbage\n\x00\n", on("repair")), expect=0, changes=True),
    Case("repair of a sound run changes nothing", "repair", lambda ws: ["orchestrator", "repair", "--run-dir", str(ws.run_dir)], expect=0),
    Case("swarm over a garbage trials.json rebuilds it", "run dir", damage("trials.json", BINARY), expect=0, changes=True, check=trial_state("1", "COMPLETED")),
]  # fmt: skip

SCENARIOS = [
    Case("restart extends without repeating points", "repeats", extend, expect=0, changes=True, check=no_repeats),
    Case("final.json damaged after exit 0 is re-derived", "data loss", fresh_swarm(ROBUST_CORRUPT_FINAL="0"), expect=0, changes=True, check=trial_state("0", "COMPLETED", attempts=2)),
    Case("a full disk does not use up retries", "data loss", fresh_swarm(ROBUST_ENV_FAILS="3"), expect=0, changes=True, check=trial_state("0", "COMPLETED", attempts=4)),
    Case("the trainer's exit 2 is not retried; the swarm fails (exit 5)", "failing swarm", fresh_swarm(ROBUST_BAD_INPUT="1"), expect=5, changes=True, check=trial_state("0", "FAILED", attempts=1)),
]  # fmt: skip

TRAINER_CASES = [
    Case("train --output-dir ''", "trainer", trainer("train", "--config", SMOKE, "--output-dir", "")),
    Case("train --output-dir a file", "trainer", _file_in_root("f", trainer("train", "--config", SMOKE, "--output-dir", "{root}/f"))),
    Case("train --output-dir under a file", "trainer", _file_in_root("f", trainer("train", "--config", SMOKE, "--output-dir", "{root}/f/out"))),
    Case("train --set loss.mse_weight=-1", "trainer", trainer("train", "--config", SMOKE, "--set", "loss.mse_weight=-1", "--output-dir", "{root}/o")),
    Case("train --set seed=-1", "trainer", trainer("train", "--config", SMOKE, "--set", "seed=-1", "--output-dir", "{root}/o")),
    Case("train --set seed beyond 64 bits", "trainer", trainer("train", "--config", SMOKE, "--set", f"seed={2**64}", "--output-dir", "{root}/o")),
    Case("train --set loss.mse_weight=inf", "trainer", trainer("train", "--config", SMOKE, "--set", "loss.mse_weight=.inf", "--output-dir", "{root}/o")),
    Case("train --set an unknown key", "trainer", trainer("train", "--config", SMOKE, "--set", "loss.nope=1", "--output-dir", "{root}/o")),
    Case("train --set without =", "trainer", trainer("train", "--config", SMOKE, "--set", "seed", "--output-dir", "{root}/o")),
    Case("train with a binary config", "trainer", lambda ws: (_write(ws.root / "c.yaml", BINARY), ["trainer", "train", "--config", str(ws.root / "c.yaml"), "--output-dir", str(ws.root / "o")])[1]),
    Case("train with a duplicated key in its config", "trainer", lambda ws: (_write(ws.root / "c.yaml", "seed: 1\nseed: 2\n"), ["trainer", "train", "--config", str(ws.root / "c.yaml"), "--output-dir", str(ws.root / "o")])[1]),
    Case("train resuming from a garbage checkpoint.pt", "trainer", lambda ws: (_write(ws.root / "o" / "checkpoint.pt", b"PK\x03\x04garbage"), ["trainer", "train", "--config", SMOKE, "--set", f"data.path={ws.dataset}", "--set", "train.epochs=1", "--output-dir", str(ws.root / "o")])[1]),
    Case("train with a list config", "trainer", lambda ws: (_write(ws.root / "c.yaml", "- 1\n"), ["trainer", "train", "--config", str(ws.root / "c.yaml"), "--output-dir", str(ws.root / "o")])[1]),
    Case("check-config with a misspelled key", "trainer", trainer("check-config", "--config", SMOKE, "--set", "optim.lr_typo=1")),
    Case("check-config without a dataset", "trainer", lambda ws: (ws.env.update(ZETA_SWARM_DATA=str(ws.root / "none")), ["trainer", "check-config", "--config", SMOKE])[1]),
    Case("zeros generate --count 1e15", "trainer", trainer("zeros", "generate", "--start", "1", "--count", "1000000000000000", "--out", "{root}/z")),
    Case("zeros generate huge --start", "trainer", trainer("zeros", "generate", "--start", str(10**30), "--count", "10", "--out", "{root}/z")),
    Case("zeros generate start+count beyond 1e12", "trainer", trainer("zeros", "generate", "--start", str(10**12 - 5), "--count", "10", "--out", "{root}/z")),
    Case("zeros odlyzko --out ''", "trainer", trainer("zeros", "odlyzko", "--out", "")),
    Case("zeros odlyzko --out under /proc", "trainer", trainer("zeros", "odlyzko", "--count", "10", "--out", "/proc/zeta")),
    Case("zeros odlyzko --out under a file", "trainer", _file_in_root("f", trainer("zeros", "odlyzko", "--count", "10", "--out", "{root}/f/z"))),
    Case("zeros verify --tolerance nan", "trainer", lambda ws: ["trainer", "zeros", "verify", str(ws.dataset), "--against", str(ws.dataset), "--tolerance", "nan"]),
    Case("zeros verify --tolerance inf", "trainer", lambda ws: ["trainer", "zeros", "verify", str(ws.dataset), "--against", str(ws.dataset), "--tolerance", "inf"]),
    Case("zeros verify --tolerance -1", "trainer", lambda ws: ["trainer", "zeros", "verify", str(ws.dataset), "--against", str(ws.dataset), "--tolerance", "-1"]),
    Case("zeros import --abs-accuracy nan", "trainer", lambda ws: (_write(ws.root / "z.txt", "14.134725142\n21.022039639\n"), ["trainer", "zeros", "import", str(ws.root / "z.txt"), "--out", str(ws.root / "zi"), "--abs-accuracy", "nan"])[1]),
]  # fmt: skip


# -- a hostile user's second pass (issue 17's last cases) ---------------------------------------
def check_config(*sets: str) -> Callable[[Workspace], list[str]]:
    def setup(ws: Workspace) -> list[str]:
        return ["trainer", "check-config", "--config", SMOKE, *[a for v in sets for a in ("--set", v)]]

    return setup


def _copy_dataset(ws: Workspace) -> Path:
    d = ws.root / "ds"
    if not d.exists():
        shutil.copytree(ws.dataset, d)
    return d


def dataset_case(
    edit: Callable[[Path], None], command: str = "check-config"
) -> Callable[[Workspace], list[str]]:
    """A copy of the case's dataset changed by `edit(dir)`, then opened by `trainer check-config`
    (the swarm's first reader) or `trainer zeros verify` (every value)."""

    def setup(ws: Workspace) -> list[str]:
        d = _copy_dataset(ws)
        edit(d)
        if command == "verify":
            return ["trainer", "zeros", "verify", str(d)]
        return ["trainer", "check-config", "--config", SMOKE, "--set", f"data.path={d}"]

    return setup


def _npy(values) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        import numpy as np

        np.save(d / "zeros.npy", values(np.load(d / "zeros.npy")), allow_pickle=True)

    return edit


def _manifest(**keys) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        m = json.loads((d / "manifest.json").read_text())
        m.update(keys)
        (d / "manifest.json").write_text(json.dumps(m))

    return edit


def sharded_case(edit: Callable[[Path], None]) -> Callable[[Workspace], list[str]]:
    """A real three-shard dataset of the first 30,000 zeros, changed by `edit(dir)`, then verified."""

    def setup(ws: Workspace) -> list[str]:
        from trainer.data.dataset import merge_shards, write_shard
        from trainer.data.odlyzko import TABLE_ACCURACY, load_table

        d = ws.root / "sharded"
        table = load_table(30_000)
        for k, lo in enumerate((0, 10_000, 20_000)):
            write_shard(str(d), k, table[lo : lo + 10_000], source="odlyzko", first_index=lo + 1,
                        abs_accuracy=TABLE_ACCURACY)  # fmt: skip
        merge_shards(str(d))
        edit(d)
        return ["trainer", "zeros", "verify", str(d)]

    return setup


def _shorten_shard(d: Path) -> None:
    import numpy as np

    np.save(d / "shards" / "00001.npy", np.load(d / "shards" / "00001.npy")[:-10])


def _hold(ws: Workspace, code: str) -> None:
    """Start a process that takes a lock (`code` prints "held" once it has it) and keeps it until
    the case's command has run."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    ws.cleanups.append(lambda: (proc.kill(), proc.wait()))


def lock_held(argv: Callable[[Workspace], list[str]]) -> Callable[[Workspace], list[str]]:
    def setup(ws: Workspace) -> list[str]:
        path = ws.run_dir / "controller.lock"
        _hold(ws, f"import fcntl, os, time; fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT); "
                  "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(600)")  # fmt: skip
        return ["orchestrator", *argv(ws)]

    return setup


def study_locked(argv: Callable[[Workspace], list[str]]) -> Callable[[Workspace], list[str]]:
    def setup(ws: Workspace) -> list[str]:
        path = ws.run_dir / "study.db"
        _hold(ws, f"import sqlite3, time; c = sqlite3.connect({str(path)!r}, isolation_level=None); "
                  "c.execute('BEGIN EXCLUSIVE'); print('held', flush=True); time.sleep(600)")  # fmt: skip
        return ["orchestrator", *argv(ws)]

    return setup


def signalled(at: str, hang: str = "0,1") -> Callable[[Workspace], list[str]]:
    """A fresh two-trial swarm whose controller gets a signal at one crash point (`at`, see
    orchestrator_signalled.py); its hanging trials are stopped after the command."""

    def setup(ws: Workspace) -> list[str]:
        ws.env.update(ROBUST_SIGNAL_AT=at, FAKE_HANG_TRIALS=hang)
        run_dir = ws.root / "phase2-minibatch"
        ws.cleanups.append(lambda: _stop(ws, run_dir))
        return ["orchestrator-signalled", *ctrl_c(ws)[1:]]

    return setup


def _stop(ws: Workspace, run_dir: Path) -> None:
    env = {k: v for k, v in case_env(ws).items() if k not in ("ROBUST_SIGNAL_AT", "FAKE_HANG_TRIALS")}
    subprocess.run([str(BIN / "orchestrator"), "stop", "--run-dir", str(run_dir), "--wait", "30"],
                   env=env, capture_output=True, timeout=120)  # fmt: skip


def killed_then_restarted(at: str) -> Callable[[Workspace], list[str]]:
    """A fresh two-trial swarm killed by SIGTERM at one crash point, then the same command again."""

    def setup(ws: Workspace) -> list[str]:
        argv = ctrl_c(ws)
        first = subprocess.run([*EXES["orchestrator-signalled"], *argv[1:]],
                               env={**case_env(ws), "ROBUST_SIGNAL_AT": at}, cwd=ws.root,
                               capture_output=True, text=True, timeout=120)  # fmt: skip
        assert first.returncode == -signal.SIGTERM, (first.returncode, first.stderr[-500:])
        return argv

    return setup


def completes(n: int) -> Callable:
    """The study holds n trials, all COMPLETED in trials.json, no two at the same point."""

    def check(ws: Workspace, proc) -> str | None:
        trials = _study_trials(ws.root / "phase2-minibatch")
        points = [tuple(sorted(p.items())) for _n, _s, p in trials]
        if len(set(points)) != len(points):
            return f"repeated: {len(points) - len(set(points))} trial(s) repeat an earlier point"
        snap = json.loads((ws.root / "phase2-minibatch" / "trials.json").read_text())
        done = [t["id"] for t in snap["trials"] if t["state"] == "COMPLETED"]
        if len(trials) != n or len(done) != n:
            return f"lost: {len(trials)} trials in the study, {len(done)} completed, expected {n}"
        return None

    return check


def says(*words: str) -> Callable:
    def check(ws: Workspace, proc) -> str | None:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        if not lines or not all(w in lines[-1] for w in words):
            return f"mislabelled: the last line does not say {words}: {lines[-1:]}"
        return None

    return check


def nothing_at(rel: str) -> Callable:
    def check(ws: Workspace, proc) -> str | None:
        return f"half-written: {rel} exists" if (ws.root / rel).exists() else None

    return check


def every(*checks: Callable) -> Callable:
    def check(ws: Workspace, proc) -> str | None:
        return next((p for c in checks if (p := c(ws, proc))), None)

    return check


def compare(*args: str) -> Callable[[Workspace], list[str]]:
    def setup(ws: Workspace) -> list[str]:
        return ["orchestrator", "compare", "--config", str(REPO / "configs" / "experiments" / "compare.yaml"),
                "--profile", "smoke", "--run-dir", str(ws.root / "cmp"), *args]  # fmt: skip

    return setup


def zeros_fanout(*args: str) -> Callable[[Workspace], list[str]]:
    return lambda ws: ["orchestrator", "zeros", *(a.replace("{root}", str(ws.root)) for a in args)]


def _symlink(ws: Workspace, name: str, target: Path) -> Path:
    link = ws.root / name
    link.symlink_to(target)
    return link


def _half_written(ws: Workspace) -> Path:
    """A run dir as a controller killed at its start leaves it: swarm.yaml, the lock, no study."""
    d = ws.root / "half"
    d.mkdir()
    shutil.copy(ws.run_dir / "swarm.yaml", d / "swarm.yaml")
    (d / "controller.lock").write_text("")
    return d


def _import_missing_near_end(ws: Workspace) -> list[str]:
    from trainer.data.odlyzko import load_table

    z = list(load_table(300))
    del z[295]
    _write(ws.root / "z.txt", "".join(f"{i + 1} {v:.9f}\n" for i, v in enumerate(z)))
    return ["trainer", "zeros", "import", str(ws.root / "z.txt"), "--out", str(ws.root / "zi")]


LONG = "x" * 300  # one path component longer than NAME_MAX (255)
RUN = lambda ws: str(ws.run_dir)  # noqa: E731

HOSTILE_CASES = [
    # odd `--set` syntax, checked by the trainer's own schema (the swarm's check before launch)
    Case("--set seed=1=2", "set syntax", check_config("seed=1=2")),
    Case("--set =1 (no key)", "set syntax", check_config("=1")),
    Case("--set loss.mse_weight= (no value)", "set syntax", check_config("loss.mse_weight=")),
    Case("--set a list for a float", "set syntax", check_config("loss.mse_weight=[1, 2]")),
    Case("--set a section to a scalar", "set syntax", check_config("loss=1")),
    Case("--set repeated primes", "set syntax", check_config("model.primes=[2, 3, 2]")),
    Case("--set train.epochs=1.5", "set syntax", check_config("train.epochs=1.5")),
    Case("--set seed=nan", "set syntax", check_config("seed=nan")),
    Case("--set seed=true", "set syntax", check_config("seed=true")),
    Case("--set loss.mse_weight=1e400", "set syntax", check_config("loss.mse_weight=1e400")),
    Case("--set a YAML python tag", "set syntax", check_config("seed=!!python/object/apply:os.system [touch PWNED]"), check=nothing_at("PWNED")),
    Case("--set a dataset that does not exist", "set syntax", check_config("data.path=/nonexistent/zeros")),
    # paths
    Case("--config a 5000-character path", "paths", lambda ws: ["trainer", "check-config", "--config", "/" + "a/" * 2500 + "c.yaml"]),
    Case("--config a missing unicode path", "paths", lambda ws: ["trainer", "check-config", "--config", str(ws.root / "zéros λ" / "c.yaml")]),
    Case("--config a directory", "paths", lambda ws: ["trainer", "check-config", "--config", str(ws.root)]),
    Case("status of a symlinked run dir", "paths", lambda ws: ["orchestrator", "status", "--run-dir", str(_symlink(ws, "link", ws.run_dir))], expect=0),
    Case("status of a dangling symlink", "paths", lambda ws: ["orchestrator", "status", "--run-dir", str(_symlink(ws, "link", ws.root / "gone"))]),
    Case("status of a file", "paths", lambda ws: ["orchestrator", "status", "--run-dir", str(_write(ws.root / "f", "x"))]),
    Case("status of a path with a 300-character name", "paths", lambda ws: ["orchestrator", "status", "--run-dir", str(ws.root / LONG)]),
    Case("report of a run under a unicode, spaced path", "paths", lambda ws: (shutil.copytree(ws.run_dir, ws.root / "ré sults λ", symlinks=True), ["orchestrator", "report", "--run-dir", str(ws.root / "ré sults λ"), "--out", str(ws.root / "rép"), "--no-plots"])[1], expect=0, chatty=True),
    Case("swarm into a run dir that cannot be made (/proc)", "paths", lambda ws: ["orchestrator", *RESUME, "--run-dir", "/proc/zeta-swarm-run"]),
    Case("swarm into a run dir under a file", "paths", lambda ws: ["orchestrator", *RESUME, "--run-dir", str(_write(ws.root / "f", "x") / "run")]),
    # locks held by other processes
    Case("swarm while another controller holds the lock", "locks", lock_held(lambda ws: [*RESUME[:6], "4", *RESUME[7:], "--run-dir", RUN(ws)]), expect=4),
    Case("repair while another controller holds the lock", "locks", lock_held(lambda ws: ["repair", "--run-dir", RUN(ws)]), expect=4),
    Case("swarm while another process locks study.db", "locks", study_locked(lambda ws: [*RESUME[:6], "4", *RESUME[7:], "--run-dir", RUN(ws)])),
    Case("status while another process locks study.db", "locks", study_locked(lambda ws: ["status", "--run-dir", RUN(ws)]), expect=0),
    # signals at chosen points of the controller
    Case("SIGINT between a wrapper's fork and its pid file", "signals", signalled("INT:wrapper spawned:1"), expect=130, changes=True, check=says("keep running (trial 0)")),
    Case("SIGINT in the second spawn", "signals", signalled("INT:wrapper spawned:2"), expect=130, changes=True, check=says("keep running (trial 0, 1)")),
    Case("SIGINT between a job spec and its wrapper", "signals", signalled("INT:job spec written:1"), expect=130, changes=True, check=says("keep running (trial 0)")),
    Case("SIGTERM after a wrapper spawned, then restart", "signals", killed_then_restarted("TERM:wrapper spawned:1"), expect=0, changes=True, check=completes(2)),
    Case("SIGTERM after a job spec, then restart", "signals", killed_then_restarted("TERM:job spec written:2"), expect=0, changes=True, check=completes(2)),
    # datasets with wrong dtypes, shapes and lengths
    Case("zeros.npy float32", "datasets", dataset_case(_npy(lambda a: a.astype("float32")))),
    Case("zeros.npy int64", "datasets", dataset_case(_npy(lambda a: a.astype("int64")))),
    Case("zeros.npy 2-D", "datasets", dataset_case(_npy(lambda a: a.reshape(-1, 2)))),
    Case("zeros.npy shorter than its manifest", "datasets", dataset_case(_npy(lambda a: a[:-1]))),
    Case("zeros.npy an object array (pickle)", "datasets", dataset_case(_npy(lambda a: a[:10].astype(object)))),
    Case("zeros.npy big-endian (same values)", "datasets", dataset_case(_npy(lambda a: a.astype(">f8")), "verify")),
    Case("manifest first_index beyond int64", "datasets", dataset_case(_manifest(first_index=2**63 + 5))),
    Case("manifest count a float", "datasets", dataset_case(_manifest(count=120000.0))),
    Case("manifest first_index true", "datasets", dataset_case(_manifest(first_index=True))),
    Case("manifest.json a directory", "datasets", dataset_case(lambda d: ((d / "manifest.json").unlink(), (d / "manifest.json").mkdir()))),
    Case("a shard 10 zeros short", "datasets", sharded_case(_shorten_shard)),
    Case("a listed shard missing", "datasets", sharded_case(lambda d: (d / "shards" / "00002.npy").unlink())),
    Case("import: a zero missing near the end", "datasets", _import_missing_near_end, check=nothing_at("zi")),
    Case("import --first-index 2**63", "datasets", lambda ws: (_write(ws.root / "z.txt", "14.134725142\n21.022039639\n"), ["trainer", "zeros", "import", str(ws.root / "z.txt"), "--out", str(ws.root / "zi"), "--first-index", str(2**63)])[1]),
    # orchestrator zeros (the fan-out)
    Case("zeros --shards 0", "zeros fan-out", zeros_fanout("--start", "1", "--count", "100", "--shards", "0", "--out", "{root}/z")),
    Case("zeros: more shards than zeros", "zeros fan-out", zeros_fanout("--start", "1", "--count", "5", "--shards", "10", "--out", "{root}/z"), check=nothing_at("z")),
    Case("zeros --table without --start 1", "zeros fan-out", zeros_fanout("--start", "2", "--count", "3000000", "--shards", "2", "--table", "--out", "{root}/z")),
    Case("zeros: more zeros than the disk takes", "zeros fan-out", zeros_fanout("--start", "1", "--count", str(10**12 - 1), "--shards", "100", "--out", "{root}/z"), check=nothing_at("z")),
    Case("zeros --out ''", "zeros fan-out", zeros_fanout("--start", "1", "--count", "100", "--shards", "2", "--out", "")),
    Case("zeros --out under a file", "zeros fan-out", lambda ws: (_write(ws.root / "f", "x"), zeros_fanout("--start", "1", "--count", "100", "--shards", "2", "--out", "{root}/f/z")(ws))[1]),
    Case("zeros --start 0", "zeros fan-out", zeros_fanout("--start", "0", "--count", "100", "--shards", "2", "--out", "{root}/z")),
    # empty and half-written run dirs
    Case("report of an empty run dir", "run dir", lambda ws: (ws.root / "empty").mkdir() or ["orchestrator", "report", "--run-dir", str(ws.root / "empty"), "--out", str(ws.root / "r"), "--no-plots"], check=nothing_at("r")),
    Case("status --json of an empty dir", "run dir", lambda ws: (ws.root / "empty").mkdir() or ["orchestrator", "status", "--json", "--run-dir", str(ws.root / "empty")]),
    Case("status --json of a half-written run dir", "run dir", lambda ws: ["orchestrator", "status", "--json", "--run-dir", str(_half_written(ws))]),
    Case("repair of an empty dir", "run dir", lambda ws: (ws.root / "empty").mkdir() or ["orchestrator", "repair", "--run-dir", str(ws.root / "empty")]),
    # environment variables with bad values
    Case("ZETA_SWARM_CRASH_AT=abc", "environment", lambda ws: (ws.env.update(ZETA_SWARM_CRASH_AT="abc"), ["orchestrator", *RESUME[:6], "4", *RESUME[7:], "--run-dir", RUN(ws)])[1]),
    Case("ZETA_SWARM_TRAINER with an unbalanced quote", "environment", lambda ws: (ws.env.update(ZETA_SWARM_TRAINER='"trainer'), ["orchestrator", *RESUME[:6], "4", *RESUME[7:], "--run-dir", RUN(ws)])[1]),
    Case("ZETA_SWARM_TRAINER a missing program", "environment", lambda ws: (ws.env.update(ZETA_SWARM_TRAINER=str(ws.root / "no-trainer")), ["orchestrator", *RESUME[:6], "4", *RESUME[7:], "--run-dir", RUN(ws)])[1]),
    Case("ZETA_SWARM_CONFIGS a missing directory", "environment", lambda ws: (ws.env.update(ZETA_SWARM_CONFIGS=str(ws.root / "none")), ["orchestrator", "swarm", "--phase", "2", "--profile", "smoke", "--dry-run", "--run-dir", str(ws.root / "dry")])[1]),
    Case("ZETA_SWARM_RUN_DIR empty", "environment", lambda ws: (ws.env.update(ZETA_SWARM_RUN_DIR=""), ["orchestrator", "status"])[1]),
    Case("ZETA_SWARM_DATA a file", "environment", lambda ws: (ws.env.update(ZETA_SWARM_DATA=str(_write(ws.root / "f", "x"))), ["trainer", "check-config", "--config", SMOKE])[1]),
    # compare: too few training zeros is refused before anything is written
    Case("compare --train-count 10", "compare", compare("--train-count", "10"), check=nothing_at("cmp")),
    Case("compare --train-count 100 (8 clusters of 64)", "compare", compare("--train-count", "100"), check=nothing_at("cmp")),
    Case("compare --train-count 0", "compare", compare("--train-count", "0"), check=nothing_at("cmp")),
    Case("compare whose every trial is refused fails (exit 5)", "compare", lambda ws: (ws.env.update(ROBUST_BAD_INPUT="1"), compare()(ws))[1], expect=5, changes=True, chatty=True, check=every(nothing_at("cmp/report"), says("compare failed: no arm completed a trial"))),
]  # fmt: skip

CTRL_C = Case(
    "Ctrl-C says what it leaves running", "failing swarm", ctrl_c, expect=130, changes=True, timeout=120
)

CASES = [*ORCH_FLAGS, *CONFIG_CASES, *RUN_DIR_CASES, *TRAINER_CASES, *SCENARIOS, *HOSTILE_CASES]
