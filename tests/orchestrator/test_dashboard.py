"""`orchestrator dashboard`: optuna-dashboard as a real subprocess on the study.db of a real (fake
trainer) swarm; its JSON API shows every trial with the baselines, the paired verdict and the output
directory the controller attached, and refuses writes."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from orchestrator.cli import main
from orchestrator.phases import SwarmRun
from orchestrator.trial_attrs import trial_attrs
from swarm_helpers import FAKE_TRAINER, FakeClock, settings

ORCHESTRATOR = str(Path(sys.executable).with_name("orchestrator"))


@pytest.fixture
def run_dir(tmp_path, study_db) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    study_db.rename(run / "study.db")
    s = settings(run, max_trials=3, parallel=2)
    s = s.model_copy(update={"backend": s.backend.model_copy(update={"env": {"FAKE_EPOCH_S": "0.01"}})})
    clock = FakeClock()
    SwarmRun(s, trainer_command=FAKE_TRAINER, clock=clock, sleep=clock.sleep, out=lambda _: None).run()
    return run


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def test_dashboard_serves_the_study_with_the_leaderboard_attributes(run_dir):
    snap = json.loads((run_dir / "trials.json").read_text())
    proc = subprocess.Popen(
        [ORCHESTRATOR, "dashboard", "--run-dir", str(run_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # printed once the socket listens
        assert "http://127.0.0.1:" in line, proc.stderr.read() if proc.poll() is not None else line
        base = line.split(": ", 1)[1].strip().removesuffix("/dashboard")

        studies = _get(f"{base}/api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == [snap["study"]]
        detail = _get(f"{base}/api/studies/{studies[0]['study_id']}")
        trials = {str(t["number"]): t for t in detail["trials"]}
        assert sorted(trials) == sorted(t["id"] for t in snap["trials"])
        for row in snap["trials"]:
            shown = trials[row["id"]]
            assert shown["state"] == "Complete" and row["state"] == "COMPLETED"
            attrs = {a["key"]: a["value"] for a in shown["user_attrs"]}
            assert attrs["output_dir"] == row["output_dir"]
            final = json.loads((Path(row["output_dir"]) / "final.json").read_text())
            expected = trial_attrs(final, row["output_dir"])
            for key in ("baseline_index", "baseline_ar", "baseline_explicit", "best_baseline", "vs_baseline"):
                assert attrs[key] == str(expected[key]), key
            assert attrs["vs_baseline"] in ("beats", "within noise", "worse")
            assert float(attrs["baseline_explicit"]) == pytest.approx(row["metrics"]["baseline_explicit"])
        # The table's sortable columns include the attributes.
        assert {"baseline_explicit", "vs_baseline", "output_dir"} <= {
            a["key"] for a in detail["union_user_attrs"]
        }

        # Read-only: the dashboard's write endpoints are refused and the study is unchanged.
        trial_id = trials[snap["trials"][0]["id"]]["trial_id"]
        request = urllib.request.Request(
            f"{base}/api/trials/{trial_id}/user-attrs",
            data=json.dumps({"user_attrs": {"output_dir": "elsewhere"}}).encode(),
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 405
        again = _get(f"{base}/api/studies/{studies[0]['study_id']}")["trials"]
        assert {a["key"]: a["value"] for a in again[0]["user_attrs"]}["output_dir"] == snap["trials"][0][
            "output_dir"
        ]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


def test_dashboard_without_a_study_is_one_line_and_exit_2(tmp_path):
    result = CliRunner().invoke(main, ["dashboard", "--run-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == f"orchestrator: error: {tmp_path}/study.db: not found; no local swarm has run in {tmp_path} (start one with `make swarm`)"
    )
    assert not (tmp_path / "study.db").exists()


@pytest.mark.parametrize(
    ("diff", "stderr", "verdict"),
    [(-0.004, 0.001, "beats"), (-0.001, 0.001, "within noise"), (0.002, 0.001, "worse")],
)
def test_trial_attrs_apply_the_paired_rule(diff, stderr, verdict):
    final = {
        "status": "completed",
        "extrapolation_error": 0.0100,
        "extrapolation_stderr": 0.0030,
        "baseline_smoothed": 0.0120,
        "baseline_index": 0.11,
        "best_baseline": "baseline_smoothed",
        "paired_diff": diff,
        "paired_stderr": stderr,
        "test_paired_diff": 0.5,
        "test_baseline_smoothed": 0.001,
    }
    attrs = trial_attrs(final, "gs://runs/s/trials/3")
    assert attrs == {
        "output_dir": "gs://runs/s/trials/3",
        "stderr": 0.003,
        "baseline_smoothed": 0.012,
        "baseline_index": 0.11,
        "best_baseline": "baseline_smoothed",
        "paired_diff": diff,
        "paired_stderr": stderr,
        "vs_baseline": verdict,
    }
