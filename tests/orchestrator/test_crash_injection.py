"""Kill the controller at every step that could lose or duplicate a trial (os._exit, like SIGKILL),
restart it, and check that no trial is lost and no (trial, attempt) is ever started twice.

Each required crash point is reached by a life armed for that step (controller_proc.TARGETED), not
by hoping that a cycle of k-th crash points lands there: the result does not depend on timing or
load."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from controller_proc import TARGETED
from orchestrator.crash_injection import CRASH_EXIT_CODE

HERE = Path(__file__).parent
MAX_TRIALS = 4
CYCLE = 4  # after the targeted lives, lives die at their 1st, 2nd, 3rd, 4th, 1st, ... crash point
LIFE = re.compile(r"life (\d+) target (.+?) k (\d+) exit (-?\d+)$")
CRASH = re.compile(r"crash injected at crash point \d+ \((.+?)\)$")


def lives(stderr: str) -> list[tuple[str, int, str | None]]:
    """(target, exit code, the crash point it crashed at) for each life, in order."""
    out, crashed_at = [], None
    for line in stderr.splitlines():
        if m := CRASH.match(line):
            crashed_at = m.group(1)
        elif m := LIFE.match(line):
            out.append((m.group(2), int(m.group(4)), crashed_at))
            crashed_at = None
    return out


def test_killed_at_every_crash_point_loses_nothing_and_duplicates_nothing(tmp_path, study_db):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.move(study_db, run_dir / "study.db")
    log = tmp_path / "spawns.log"
    env = dict(
        os.environ,
        FAKE_TRAINER_LOG=str(log),
        FAKE_FAIL_TRIALS="1",  # trial 1 fails once: the retry path is crashed through too
        FAKE_EPOCH_S="0.1",
    )
    env.pop("ZETA_SWARM_CRASH_AT", None)
    # The timeout only turns a hang into a failure; a loaded machine takes longer, never fails.
    proc = subprocess.run(
        [sys.executable, str(HERE / "controller_proc.py"), str(run_dir), str(MAX_TRIALS), str(CYCLE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    got = lives(proc.stderr)
    # Every life but the last died by injection, the last finished the run.
    assert [code for _, code, _ in got[:-1]] == [CRASH_EXIT_CODE] * (len(got) - 1)
    assert got[-1][1] == 0 and got[-1][2] is None
    # The targeted lives come first, one per step, and each died at exactly the step it targeted.
    targeted = [(target, crashed_at) for target, _, crashed_at in got if target != "-"]
    assert targeted == [(step, step) for step in TARGETED], targeted
    assert len(got) > len(TARGETED)

    snap = json.loads((run_dir / "trials.json").read_text())
    assert [t["id"] for t in snap["trials"]] == [str(i) for i in range(MAX_TRIALS)]
    assert [t["state"] for t in snap["trials"]] == ["COMPLETED"] * MAX_TRIALS
    for t in snap["trials"]:
        final = json.loads((Path(t["output_dir"]) / "final.json").read_text())
        assert t["value"] == final["extrapolation_error"]
    spawns = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert all(n == 1 for n in spawns.values()), f"started twice: {spawns}"
    expected = {f"phase2-minibatch-t{i}-a1" for i in range(MAX_TRIALS)} | {"phase2-minibatch-t1-a2"}
    assert set(spawns) == expected
    assert {t["id"]: t["attempts"] for t in snap["trials"]} == {"0": 1, "1": 2, "2": 1, "3": 1}
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert Counter(e["trial"] for e in events if e["event"] == "completed") == {
        str(i): 1 for i in range(MAX_TRIALS)
    }
