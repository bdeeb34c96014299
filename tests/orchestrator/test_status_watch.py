"""`orchestrator status --watch` (orchestrator.live): frames of a live run with an injected clock and
sleep, redrawn in place on a terminal, ending when the controller lets go of the run; a finished run
is printed once; a run directory in a bucket (the storage emulator) is watched the same way."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from orchestrator.cli import main
from orchestrator.live import Watch, bar, progress
from orchestrator.run_files import ControllerLock

NOW = 1_800_000_000.0
BASELINES = {"baseline_index": 0.11, "baseline_ar": 0.066, "baseline_explicit": 0.014}


def _trial(tid, state, value=None, stderr=None, params=None, output_dir=""):
    metrics = {}
    if value is not None:  # as the controller stores them: paired against the best baseline
        metrics = {"extrapolation_stderr": stderr, **BASELINES}
        metrics |= {"paired_diff": value - min(BASELINES.values()), "paired_stderr": stderr}
    return {
        "id": tid,
        "state": state,
        "params": params or {"loss.gue_nll_weight": 0.01 * (1 + int(tid))},
        "value": value,
        "stderr": stderr,
        "metrics": metrics,
        "output_dir": output_dir,
        "started": NOW - 120 if state == "RUNNING" else None,
    }


def _snap(trials, gpu_hours=0.35):
    return {
        "study": "phase2-minibatch",
        "phase": 2,
        "team": "minibatch",
        "backend": "local",
        "updated": NOW - 3,
        "baselines": BASELINES,
        "budget": {"gpu_hours": gpu_hours, "gpu_hour_cap": 4, "cost": gpu_hours, "currency": "USD"},
        "trials": trials,
    }


SETTINGS = {
    "phase": 2,
    "team": "minibatch",
    "parallel": 2,
    "epochs": 4,
    "team_machines": {
        "minibatch": {"overrides": {"train.epochs": 4}},
        "fullbatch": {"overrides": {"train.epochs": 8}},
    },
}


def _row(epoch, seconds, objective):
    return json.dumps({"epoch": epoch, "seconds": seconds, "val_extrapolation_error": objective}) + "\n"


def _write_run(run: Path, trials) -> None:
    (run / "trials").mkdir(parents=True, exist_ok=True)
    (run / "trials.json").write_text(json.dumps(_snap(trials)))
    (run / "swarm.yaml").write_text(yaml.safe_dump(SETTINGS))


def test_progress_eta_comes_from_the_measured_seconds_per_epoch():
    rows = [{"epoch": 1, "seconds": 30.0, "extrapolation_error": 0.05}, {"epoch": 2, "seconds": 70.0}]
    p = progress(rows, 10)
    assert (p.epoch, p.epochs, p.objective) == (2, 10, None)
    assert p.eta_s == pytest.approx(35.0 * 8)
    assert progress([], 10).eta_s is None
    assert bar(1, 4) == "[#####---------------]" and bar(4, 4) == "[####################]"
    assert bar(0, None) == "[????????????????????]"


def test_watch_redraws_in_place_until_the_controller_lets_go(tmp_path):
    run = tmp_path / "run"
    running = [
        _trial("0", "COMPLETED", 0.0121, 0.0004),
        _trial("1", "COMPLETED", 0.0300, 0.001),
        _trial("2", "RUNNING"),
        _trial("3", "RUNNING", params={"train.mode": "fullbatch"}),  # another team: 8 epochs
        _trial("4", "PENDING"),
    ]
    _write_run(run, running)
    (run / "trials" / "2").mkdir()
    (run / "trials" / "2" / "metrics.jsonl").write_text(_row(1, 30.0, 0.02))
    lock = ControllerLock(run)
    lock.acquire()
    now = [NOW]
    sleeps = []

    def sleep(seconds):  # the swarm moves on between frames; no real waiting
        sleeps.append(seconds)
        now[0] += seconds
        if len(sleeps) == 1:
            with open(run / "trials" / "2" / "metrics.jsonl", "a") as f:
                f.write(_row(2, 62.0, 0.015))
                f.write('{"epoch": 3, "seconds": 9')  # a line the trainer is still writing
        else:
            trials = [*running[:2], _trial("2", "COMPLETED", 0.0110, 0.0005), _trial("3", "STOPPED")]
            (run / "trials.json").write_text(
                json.dumps(_snap(trials + [_trial("4", "COMPLETED", 0.05, 0.002)]))
            )
            lock.release()

    out = io.StringIO()
    Watch(run, out, clock=lambda: now[0], sleep=sleep, interval=5, tty=True, width=200).run()
    assert sleeps == [5, 5]
    # The first frame, then two redraws that each go back up over the frame before and clear it.
    first, up1, second, up2, last = re.split(r"\x1b\[(\d+)F\x1b\[J", out.getvalue())
    assert (int(up1), int(up2)) == (first.count("\n"), second.count("\n"))
    assert "trials: pending 1  running 2  completed 2  (total 5)" in first
    assert "slots: 2 of 2 running, 1 pending" in first
    assert "trial 2     [#####---------------] epoch 1/4     objective 0.02000  ETA 1m30s" in first
    assert "trial 3     [--------------------] epoch 0/8     objective -  ETA -" in first
    assert "best so far: 0.01210 ± 0.00040 (trial 0)  |  best baseline (explicit) 0.01400: beats it" in first
    assert "GPU-hours: 0.350 of cap 4 (9%); cost 0.35 USD" in first
    assert "Leaderboard" in first
    # 62 s for 2 epochs: 31 s per epoch, 2 to go; the half-written third row is not read yet.
    assert "trial 2     [##########----------] epoch 2/4     objective 0.01500  ETA 1m02s" in second
    assert "the run is over" not in first + second
    assert "best so far: 0.01100 ± 0.00050 (trial 2)" in last and "the run is over" in last
    assert "trial 2 " not in last.split("Leaderboard")[0]  # nothing running any more


def test_a_finished_run_is_printed_once(tmp_path):
    run = tmp_path / "run"
    _write_run(run, [_trial("0", "COMPLETED", 0.0300, 0.001)])

    def never(_):
        raise AssertionError("a finished run must not be watched")

    out = io.StringIO()
    Watch(run, out, clock=lambda: NOW, sleep=never, tty=False).run()
    text = out.getvalue()
    assert text.count("phase2-minibatch  phase 2") == 1 and "\x1b[" not in text
    assert (
        "best so far: 0.03000 ± 0.00100 (trial 0)  |  best baseline (explicit) 0.01400: does not beat it"
        in text
    )
    assert text.rstrip().endswith("(the run is over: nothing more to watch)")

    r = CliRunner().invoke(main, ["status", "--run-dir", str(run), "--watch"])
    assert r.exit_code == 0 and r.output.count("Leaderboard") == 1
    r = CliRunner().invoke(main, ["status", "--run-dir", str(run), "--watch", "--json"])
    assert r.exit_code == 2 and "--json and --watch: choose one" in r.output


def test_watch_a_run_directory_in_a_bucket(storage_emulator):
    from google.cloud import storage

    bucket = storage.Client().bucket("zeta-swarm-test-data")
    prefix = "watch-test/phase2-minibatch"
    run = f"gs://zeta-swarm-test-data/{prefix}"
    trial_dir = "gs://zeta-swarm-test-data/runs-bucket/phase2-minibatch/trials/0"
    bucket.blob(f"{prefix}/trials.json").upload_from_string(
        json.dumps(_snap([_trial("0", "RUNNING", output_dir=trial_dir)]))
    )
    bucket.blob(f"{prefix}/swarm.yaml").upload_from_string(yaml.safe_dump(SETTINGS))
    bucket.blob("runs-bucket/phase2-minibatch/trials/0/metrics.jsonl").upload_from_string(
        _row(1, 40.0, 0.03) + _row(2, 80.0, 0.025)
    )
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        bucket.blob(f"{prefix}/trials.json").upload_from_string(
            json.dumps(_snap([_trial("0", "COMPLETED", 0.02, 0.001, output_dir=trial_dir)]))
        )

    out = io.StringIO()
    Watch(run, out, clock=lambda: NOW, sleep=sleep, tty=False).run()
    text = out.getvalue()
    assert sleeps == [2.0]
    assert "trial 0     [##########----------] epoch 2/4     objective 0.02500  ETA 1m20s" in text
    assert text.count("phase2-minibatch  phase 2") == 2 and "the run is over" in text
    assert "best so far: 0.02000 ± 0.00100 (trial 0)" in text
