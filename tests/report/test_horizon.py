"""Horizon curves in the report (orchestrator.report.horizon): the champion's error at each step k
against every baseline, and each arm's seed-averaged curve, from predictions.json `horizon_curves`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from orchestrator.report import build_report, horizon
from orchestrator.report.load import load

BASELINES = (
    "baseline_index",
    "baseline_ar",
    "baseline_explicit",
    "baseline_smoothed",
    "baseline_smoothed_ar",
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_the_champion_is_the_best_trial_and_its_curves_average_to_its_errors(winning_run):
    loaded = load([str(winning_run)])
    run, trial = horizon.champion(loaded)
    assert trial.value == min(t.value for t in run.completed) and run.team == "minibatch"
    tune, test = horizon.curves(trial, "tune"), horizon.curves(trial, "test")
    assert set(tune) == set(test) == {"model", *BASELINES}
    assert len(tune["model"]) == 100 and tune["model"][0] < tune["model"][-1]
    assert sum(tune["model"]) / 100 == pytest.approx(trial.value, rel=1e-6)
    for name in BASELINES:
        assert sum(test[name]) / 100 == pytest.approx(trial.metric(f"test_{name}"), rel=1e-6)


def test_mean_curves_average_the_seeds_step_by_step(experiment_dir):
    loaded = load([str(experiment_dir)])
    groups = dict(horizon.arms(loaded))
    assert list(groups) == ["t1-rg", "t1-no-rg", "t2-minibatch"]
    seeds = groups["t1-rg"]
    mean = horizon.mean_curves(seeds, "tune")["model"]
    for k in (0, 49, 99):
        assert mean[k] == pytest.approx(
            sum(horizon.curves(t, "tune")["model"][k] for t in seeds) / len(seeds)
        )


def test_phase3_arms_are_its_configurations_with_replicas_pooled(tmp_path, make_run):
    run = make_run(
        tmp_path / "phase3",
        [0.030, 0.031, 0.020, 0.021, 0.022],
        phase=3,
        extra_states=False,
        vary_weights=False,
    )
    snap = json.loads((run / "trials.json").read_text())
    for t in snap["trials"]:  # two configurations: 2 and 3 seeds
        t["params"] = {"loss.gue_nll_weight": 0.1 if int(t["id"]) < 2 else 0.01, "seed": int(t["id"])}
    (run / "trials.json").write_text(json.dumps(snap))
    groups = horizon.arms(load([str(run)]))
    assert [(label, sorted(t.id for t in ts)) for label, ts in groups] == [
        ("#1 (3 seeds)", ["2", "3", "4"]),
        ("#2 (2 seeds)", ["0", "1"]),
    ]
    out = build_report([str(run)], tmp_path / "report")
    assert (out / "arm_horizons.png").read_bytes()[:8] == PNG_SIGNATURE
    assert "src='arm_horizons.png'" in (out / "index.html").read_text()


def test_the_experiment_report_draws_both_figures(experiment_dir, tmp_path):
    out = build_report([str(experiment_dir)], tmp_path / "exp")
    html = (out / "index.html").read_text()
    for name in ("horizon.png", "arm_horizons.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
        assert f"src='{name}'" in html


def test_trials_without_horizon_curves_draw_nothing(tmp_path, make_run):
    run = make_run(tmp_path / "old", [0.03, 0.02], extra_states=False)
    for predictions in Path(run).glob("trials/*/predictions.json"):
        obj = json.loads(predictions.read_text())
        del obj["horizon_curves"]
        predictions.write_text(json.dumps(obj))
    loaded = load([str(run)])
    assert horizon.champion(loaded) is None
    assert not horizon.horizon(loaded, tmp_path / "h.png") and not (tmp_path / "h.png").exists()
    assert not horizon.arm_horizons(loaded, tmp_path / "a.png")
