"""The playbook phase (orchestrator.playbook): promotion of a round's top configurations to a full
evaluation, the carried winner, ranking by gates then task, the guardrails of the file's schema,
and its dry run. Runs use the fake trainer (tests/orchestrator/fake_trainer.py), whose objective
is best at lr 5e-4, warmup 10 and max_horizon 32, and whose gates fail where FAKE_GATE_FAIL says."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from orchestrator.cli import main
from orchestrator.paths import REPO_ROOT
from orchestrator.phases import SwarmRun
from orchestrator.report import build_report
from orchestrator.report.playbook_rank import Config, horizon_comparison, rank
from orchestrator.settings_loader import load_settings
from swarm_helpers import FAKE_TRAINER, NO_EARLY_STOP, FakeClock

from orchestrator import promotion

SMALL_PLAYBOOK = {
    "phase": "playbook",
    "title": "test playbook",
    "promotion": {"top": 2, "seeds": 2, "epochs": 3},
    "gates": {"spacing_ks": 0.15, "block_variance_logratio": 0.7, "nonpositive_fraction": 0.01},
    "guardrails": {
        "not_together": [{"knobs": ["optim.lr"], "with": ["train.max_horizon"], "why": "one at a time"}],
        "memory": ["train.max_horizon"],
    },
    "rounds": [
        {
            "name": "A",
            "kind": "grid",
            "values": {"optim.lr": [3.0e-4, 1.0e-3], "optim.warmup_steps": [0, 10]},
        },
        {
            "name": "C",
            "kind": "points",
            "points": [{"train.max_horizon": h} for h in (1, 16, 32)],
            "memory": "nodes per step unchanged",
        },
    ],
    "early_stopping": {"baseline_sigma": {"enabled": False}, "median": {"enabled": False}},
}


def _configs(tmp_path: Path, body: dict) -> Path:
    """A copy of configs/ whose playbook.yaml is `body`."""
    cdir = tmp_path / "configs"
    if not cdir.exists():
        shutil.copytree(REPO_ROOT / "configs", cdir)
    (cdir / "phases" / "playbook.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    return cdir


def _run(tmp_path: Path, empty_study_db: Path, monkeypatch, body: dict):
    run_dir = tmp_path / "playbook-minibatch"
    run_dir.mkdir()
    shutil.copy(empty_study_db, run_dir / "study.db")
    s = load_settings(
        "playbook", profile="smoke", run_dir=run_dir, config_dir=_configs(tmp_path, body), parallel=4
    )
    backend = s.backend.model_copy(update={"poll_s": 1.0, "grace_s": 2.0, "env": {"FAKE_EPOCH_S": "0.0"}})
    s = s.model_copy(update={"backend": backend, "early_stopping": NO_EARLY_STOP})
    clock = FakeClock()
    lines: list[str] = []
    snap = SwarmRun(s, trainer_command=FAKE_TRAINER, clock=clock, sleep=clock.sleep, out=lines.append).run()
    return run_dir, snap, lines


def test_rounds_promote_their_top_configurations_and_carry_the_full_evaluation_winner(
    tmp_path, empty_study_db, monkeypatch
):
    # The best point of round A (lr 3e-4, warmup 10) fails the gates: it is not promoted.
    monkeypatch.setenv("FAKE_GATE_FAIL", "optim.lr=0.0003,optim.warmup_steps=10")
    run_dir, snap, lines = _run(tmp_path, empty_study_db, monkeypatch, SMALL_PLAYBOOK)
    assert not snap["failed"], snap["ended_because"]
    record = promotion.read_record(run_dir)
    assert list(record) == ["A", "A-full", "C", "C-full"]
    trials = {t["id"]: t for t in snap["trials"]}
    a_full = [trials[i]["params"] for i in record["A-full"]["trials"]]
    # Top 2 of A among the gate-passing: lr 3e-4 warmup 0 (0.00044 + 0.00025) and lr 1e-3 warmup 10.
    promoted = {(p["optim.lr"], p["optim.warmup_steps"]) for p in a_full}
    assert promoted == {(3e-4, 0), (1e-3, 10)}
    assert sorted(p["seed"] for p in a_full) == [0, 0, 1, 1]
    assert {p["train.epochs"] for p in a_full} == {3}  # the full budget; the small one is 2
    assert all("train.epochs" not in trials[i]["params"] for i in record["A"]["trials"])
    # Round C fixes the full evaluation's winner (passes the gates, smallest mean tune objective).
    c_params = [trials[i]["params"] for i in record["C"]["trials"]]
    assert {(p["optim.lr"], p["optim.warmup_steps"]) for p in c_params} == {(3e-4, 0)}
    assert sorted(p["train.max_horizon"] for p in c_params) == [1, 16, 32]
    # C's full evaluation: its top 2 by the objective, max_horizon 32 and 16.
    c_full = {trials[i]["params"]["train.max_horizon"] for i in record["C-full"]["trials"]}
    assert c_full == {16, 32}
    # The final ranking, printed at the end: C's horizon-32 configuration first; then the horizon
    # comparison of the best multi-step configuration with the best one-step one (from A-full).
    ranking = lines[
        lines.index(
            "playbook ranking (gates first, then the task: test-window model - best baseline, seeds pooled):"
        )
        + 1 :
    ]
    assert ranking[0].startswith("  1 | C-full | ") and "max_horizon=32" in ranking[0]
    horizon = next(line for line in lines if line.startswith("best multi-step"))
    assert "max_horizon 32, C-full" in horizon and "minus best one-step (A-full" in horizon

    # The report's playbook page: each round's table, the promoted trials, gates and cost.
    out = build_report([str(run_dir)], tmp_path / "report", plots=False)
    page = (out / "playbook.md").read_text()
    assert "## Round A" in page and "## Round A-full: full evaluation" in page
    assert "## Final ranking (task + gates + cost)" in page
    failing = [
        row for row in page.splitlines() if "FAIL nonpositive_fraction" in row or "FAIL spacing_ks" in row
    ]
    assert len(failing) == 1 and "lr=0.0003" in failing[0] and "warmup_steps=10" in failing[0]
    assert "CPU-h" in page and "s/step" in page
    assert (out / "playbook.html").read_text().count("<table>") == 5
    assert "<a href='playbook.html'>" in (out / "index.html").read_text()


def _final(diff: float, fail: bool = False) -> dict:
    windows = {"start": [0, 1, 2], "model": [1 + diff, 2 + diff, 3 + diff], "baseline_a": [1.0, 2.0, 3.0]}
    gates = {"spacing_ks": 0.5 if fail else 0.1, "block_variance_logratio": 0.1, "nonpositive_fraction": 0.0}
    return {"gates": gates, "windows": {"test": windows, "tune": windows}}


GATES = {"spacing_ks": 0.15, "block_variance_logratio": 0.7, "nonpositive_fraction": 0.01}


def test_a_configuration_failing_a_gate_ranks_below_every_one_that_passes():
    best_but_failing = Config("R", {"k": 1}, ["1"], [_final(-0.5, fail=True)], GATES, [0.1])
    middling = Config("R", {"k": 2}, ["2"], [_final(-0.1)], GATES, [0.2])
    worst = Config("R", {"k": 3}, ["3"], [_final(+0.2)], GATES, [0.3])
    no_gates = Config("R", {"k": 4}, ["4"], [{"windows": _final(-0.9)["windows"]}], GATES, [0.05])
    # Passing first (by task), then the failing ones (by task).
    assert [c.params["k"] for c in rank([no_gates, best_but_failing, worst, middling])] == [2, 3, 4, 1]
    assert best_but_failing.failed == ["spacing_ks"]
    assert no_gates.failed == list(GATES)  # a gate final.json does not report counts as failed


def _invoke_with(tmp_path: Path, body: dict, monkeypatch):
    monkeypatch.setenv("ZETA_SWARM_CONFIGS", str(_configs(tmp_path, body)))
    return CliRunner().invoke(
        main, ["swarm", "--phase", "playbook", "--run-dir", str(tmp_path / "r"), "--dry-run"]
    )


def test_a_round_that_changes_nodes_per_step_without_the_learning_rate_is_refused(tmp_path, monkeypatch):
    body = json.loads(json.dumps(SMALL_PLAYBOOK))
    body["rounds"][1]["points"] = [{"train.clusters_per_step": c} for c in (2, 4)]
    r = _invoke_with(tmp_path, body, monkeypatch)
    assert r.exit_code == 2, r.output
    assert r.output.count("\n") == 1 and r.output.startswith("orchestrator: error: ")
    assert (
        "playbook.yaml:" in r.output
        and "rounds.1: round C changes nodes per step (train.clusters_per_step)" in r.output
    )
    assert "`lr_not_refit`" in r.output and not (tmp_path / "r").exists()
    # Saying why not lets it through to the next check.
    body["rounds"][1]["lr_not_refit"] = "the test keeps the learning rate on purpose"
    assert "nodes per step" not in _invoke_with(tmp_path, body, monkeypatch).output


def test_a_round_varying_knobs_declared_not_together_is_refused(tmp_path, monkeypatch):
    body = json.loads(json.dumps(SMALL_PLAYBOOK))
    body["rounds"][1]["points"] = [
        {"train.max_horizon": 1, "optim.lr": 1e-3},
        {"train.max_horizon": 16, "optim.lr": 3e-4},
    ]
    r = _invoke_with(tmp_path, body, monkeypatch)
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    assert "round C varies optim.lr together with train.max_horizon" in r.output
    assert "guardrails.not_together forbids (one at a time)" in r.output


@pytest.fixture
def zeros(odlyzko_prefix, monkeypatch):
    monkeypatch.setenv("ZETA_SWARM_DATA", str(odlyzko_prefix(120_000)))


def test_dry_run_of_the_playbook_phase(tmp_path, zeros):
    run_dir = tmp_path / "playbook-minibatch"
    r = CliRunner().invoke(main, ["swarm", "--phase", "playbook", "--run-dir", str(run_dir), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "study playbook-minibatch: phase playbook" in r.output
    assert "round A1: fixed design (grid) of 9 points" in r.output
    assert (
        "round A1-full: promote the top 2 of the round before" in r.output
        and "28 epochs x 2 seeds" in r.output
    )
    assert "round D: fixed design (lhs) of 3 points, carrying" in r.output
    commands = [line for line in r.output.splitlines() if line.startswith("  trainer train")]
    assert len(commands) == 9 + 3 + 4 + 7 + 3  # the full evaluations' points need the rounds' results
    assert (
        "round C-full: promotes the top 2 of round C x 2 seeds at 28 epochs once C has finished" in r.output
    )
    assert sum("--set train.max_horizon=48" in c for c in commands) == 2 + 1  # round C, round D
    assert "dry run: nothing was launched" in r.output and not run_dir.exists()


def _seeded(diffs: list[float], horizon: int) -> Config:
    finals = [_final(d) for d in diffs]
    params = {"train.max_horizon": horizon}
    return Config("R", params, [str(i) for i in range(len(diffs))], finals, GATES, [0.1] * len(diffs), [0, 1])


def test_the_horizon_comparison_is_not_a_finding_when_its_seeds_disagree():
    # Seed by seed, multi-step minus one-step is -0.3 and +0.1: the window-paired interval of the
    # seed average excludes 0 (every window moves alike), the seeds do not agree.
    mixed = horizon_comparison([_seeded([-0.3, +0.1], 32), _seeded([0.0, 0.0], 1)])
    assert mixed.hi < 0 and mixed.per_seed == pytest.approx({0: -0.3, 1: 0.1})
    assert mixed.within_noise and "not established" in mixed.text()
    agreed = horizon_comparison([_seeded([-0.3, -0.1], 32), _seeded([0.0, 0.0], 1)])
    assert not agreed.within_noise and "multi-step better" in agreed.text()
