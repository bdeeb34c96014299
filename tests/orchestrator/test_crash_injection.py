"""Kill the controller at every checkpoint of its passes (os._exit, like SIGKILL), restart it, and
check that no trial is lost and no (trial, attempt) is ever started twice."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from orchestrator.crash_injection import CRASH_EXIT_CODE

HERE = Path(__file__).parent
MAX_TRIALS = 4
CYCLE = 4  # lives die at their 1st, 2nd, 3rd, 4th, 1st, ... checkpoint
# The steps whose interruption could lose or duplicate a trial (controller_proc.TARGETED crashes at
# each once, the k-cycle at whatever comes) plus the end-of-pass snapshot.
MUST_CRASH_AT = {
    "job dir created",
    "job spec written",
    "wrapper spawned",
    "launch",
    "suggest",
    "complete",
    "snapshot",
}


def test_killed_at_every_checkpoint_loses_nothing_and_duplicates_nothing(tmp_path, study_db):
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
    proc = subprocess.run(
        [sys.executable, str(HERE / "controller_proc.py"), str(run_dir), str(MAX_TRIALS), str(CYCLE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    lives = re.findall(r"life (\d+) k \d+ exit (-?\d+)", proc.stdout)
    codes = [int(code) for _, code in lives]
    assert codes[:-1] == [CRASH_EXIT_CODE] * (len(codes) - 1) and codes[-1] == 0
    assert len(lives) >= len(MUST_CRASH_AT) + 1, f"only {len(lives)} lives"
    crashed_at = set(re.findall(r"crash injected at checkpoint \d+ \((.+?)\)", proc.stderr))
    assert MUST_CRASH_AT <= crashed_at, f"never crashed at {MUST_CRASH_AT - crashed_at}"

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
