"""Phases 1 -> 2 -> 3 with the fake trainer: phase 1's two rounds and its lock file, phase 2 on the
locked architecture, phase 3's championship of phase 2's best with replicas and the control team."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from orchestrator.leaderboard import format_leaderboard, rank
from orchestrator.phases import SwarmRun
from swarm_helpers import FAKE_TRAINER, FakeClock, settings


def _run(root: Path, template: Path, phase: int, **update):
    run_dir = root / f"phase{phase}-minibatch"
    run_dir.mkdir(exist_ok=True)
    if not (run_dir / "study.db").exists():
        shutil.copy(template, run_dir / "study.db")
    s = settings(run_dir, phase=phase, **update)
    s = s.model_copy(update={"backend": s.backend.model_copy(update={"env": {"FAKE_EPOCH_S": "0.01"}})})
    clock = FakeClock()
    lines: list[str] = []
    snap = SwarmRun(s, trainer_command=FAKE_TRAINER, clock=clock, sleep=clock.sleep, out=lines.append).run()
    return s, snap, lines


def test_phases_one_two_three(tmp_path, empty_study_db):
    # Phase 1: 5 prime sets at lr 1e-3, then 3 learning rates with cosine on the winning set.
    s1, snap1, lines1 = _run(tmp_path, empty_study_db, 1, max_trials=100)
    trials = snap1["trials"]
    assert len(trials) == 8 and all(t["state"] == "COMPLETED" for t in trials)
    assert [t["params"]["optim.scheduler"] for t in trials] == ["none"] * 5 + ["cosine"] * 3
    assert {t["params"]["model.primes"] for t in trials[5:]} == {"[2,3,5]"}  # the primes round's winner
    assert sorted(t["params"]["optim.lr"] for t in trials[5:]) == [5e-5, 5e-4, 1e-3]
    lock = yaml.safe_load((Path(s1.run_dir) / "lock.yaml").read_text())
    assert lock["winners"] == {"model.primes": [2, 3, 5], "optim.lr": 5e-4, "optim.scheduler": "cosine"}
    assert any(line.startswith("locked: ") for line in lines1)
    # Trials ran with the phase's fixed loss weights and their own primes.
    config = (Path(trials[0]["output_dir"]) / "config.yaml").read_text()
    assert "loss.gue_nll_weight: 0.02" in config and "model.primes: [2,3,5]" in config

    # Phase 2 reads the lock.
    s2, snap2, lines2 = _run(tmp_path, empty_study_db, 2, max_trials=4)
    assert s2.lock_source.endswith("phase1-minibatch/lock.yaml")
    assert any("locked architecture from" in line and "lock.yaml" in line for line in lines2)
    config = (Path(snap2["trials"][0]["output_dir"]) / "config.yaml").read_text()
    assert "model.primes: [2,3,5]" in config and "optim.lr: 0.0005" in config

    # Phase 3: top 2 of phase 2 x 2 seeds, plus the full-batch control (2 seeds) with the winner's
    # weights and the MSE-only arm (2 seeds, every prior weight 0) on the phase's team.
    s3 = settings(tmp_path / "phase3-minibatch", phase=3)
    s3_champ = {**s3.championship, "top": 2, "replicas": 2}
    _, snap3, lines3 = _run(tmp_path, empty_study_db, 3, championship=s3_champ, max_trials=100)
    trials3 = snap3["trials"]
    assert len(trials3) == 8 and all(t["state"] == "COMPLETED" for t in trials3)
    mse_only = [t for t in trials3 if t["params"]["loss.gue_nll_weight"] == 0.0]
    assert len(mse_only) == 2 and {t["params"]["seed"] for t in mse_only} == {0, 1}
    assert {t["params"]["train.mode"] for t in mse_only} == {"minibatch"}
    config = (Path(mse_only[0]["output_dir"]) / "config.yaml").read_text()
    for knob in ("gue_nll_weight", "gue_mmd_weight", "rg_penalty_weight"):
        assert f"loss.{knob}: 0.0" in config
    best2 = sorted((t for t in snap2["trials"] if t["state"] == "COMPLETED"), key=lambda t: t["value"])
    control = [t for t in trials3 if t["params"]["train.mode"] == "fullbatch"]
    assert len(control) == 2 and {t["params"]["seed"] for t in control} == {0, 1}
    assert control[0]["params"]["loss.gue_nll_weight"] == pytest.approx(
        best2[0]["params"]["loss.gue_nll_weight"]
    )
    assert control[0]["machine"] == "local-cpu"
    assert "train.mode: fullbatch" in (Path(control[0]["output_dir"]) / "config.yaml").read_text()
    # The leaderboard pools replicas: 4 configurations (two minibatch, the control, MSE only).
    rows = rank(snap3)
    assert len(rows) == 4 and all(r["n"] == 2 for r in rows)
    assert {r["best_baseline_name"] for r in rows} == {"baseline_smoothed_ar"}
    board = format_leaderboard(snap3)
    assert "objective ± stderr" in board and "NO" in board  # the fake never beats its best baseline
    # The end of phase 3 judges on the test windows, seeds averaged per window, Holm over 4.
    verdict = "\n".join(lines3[lines3.index(next(x for x in lines3 if x.startswith("Phase 3"))) :])
    assert "2 configuration(s) promoted from phase 2, the control, the MSE-only arm; 4 candidates" in verdict
    assert "0 of 4 candidates beat the best baseline on the test windows" in verdict
    assert "Holm-adjusted over the 4 at family-wise level 5%" in verdict
    assert (
        "MSE only minus the champion on the test windows:" in verdict and "paired over 16 windows" in verdict
    )


def test_phase3_without_phase2_results_is_a_clear_error(tmp_path, empty_study_db):
    from orchestrator.errors import ConfigError

    with pytest.raises(ConfigError, match="phase 3 needs phase 2's results"):
        _run(tmp_path, empty_study_db, 3)
    assert not (tmp_path / "phase3-minibatch" / "trials.json").exists()


def test_max_trials_caps_each_design_round_without_leaking_points(tmp_path, empty_study_db):
    s1, snap, _ = _run(tmp_path, empty_study_db, 1, max_trials=2)
    trials = snap["trials"]
    # 2 of the 5 prime sets, then 2 of the 3 learning rates on the better of those two.
    assert [t["params"]["optim.scheduler"] for t in trials] == ["none", "none", "cosine", "cosine"]
    assert [t["params"]["model.primes"] for t in trials[:2]] == ["[2,3,5]", "[2,3,5,7]"]
    assert {t["params"]["model.primes"] for t in trials[2:]} == {"[2,3,5]"}
    assert all(t["state"] == "COMPLETED" for t in trials)


def test_restarting_a_run_with_different_trial_settings_is_refused(tmp_path, empty_study_db):
    from orchestrator.errors import ConfigError

    _run(tmp_path, empty_study_db, 2, max_trials=1)
    _run(tmp_path, empty_study_db, 2, max_trials=2, parallel=1)  # more trials, fewer slots: fine
    with pytest.raises(ConfigError, match="different epochs, overrides"):
        _run(tmp_path, empty_study_db, 2, max_trials=3, epochs=5, overrides={"train.epochs": 5})
