"""The trainer command's precedence (orchestrator.trial_command): profile < profile-phase < phase
fixed < lock < team < round fixed < trial params, one test per level through the real config files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from orchestrator.paths import CONFIG_DIR
from orchestrator.settings_loader import load_settings
from orchestrator.trial_command import PRECEDENCE, job_spec, layered, trainer_args

KEY = "optim.lr"  # a key every layer may set (phase 2 locks it, so the lock layer sets it too)


def test_layered_names_the_seven_layers_lowest_first_and_each_higher_one_wins():
    assert PRECEDENCE == ("profile", "profile_phase", "phase_fixed", "lock", "team", "round_fixed", "trial")
    for low, high in zip(PRECEDENCE, PRECEDENCE[1:], strict=False):
        # keyword order does not matter: the order is PRECEDENCE's
        assert layered(**{high: {KEY: high}, low: {KEY: low, "other": low}}) == {KEY: high, "other": low}
    with pytest.raises(TypeError, match=r"unknown override layer.*the layers are profile, profile_phase, "):
        layered(phase={KEY: 1})


def _configs(tmp: Path, top: int) -> tuple[Path, dict, dict]:
    """configs/ with layers 0..top of PRECEDENCE setting KEY to their own index; returns the
    configs dir and the round fixed and trial params layers (set by the caller's command)."""
    cdir = tmp / "configs"
    shutil.copytree(CONFIG_DIR, cdir)

    def edit(name: str, change) -> None:
        path = cdir / name
        raw = yaml.safe_load(path.read_text())
        change(raw)
        path.write_text(yaml.safe_dump(raw, sort_keys=False))

    sets = {name: i < top + 1 for i, name in enumerate(PRECEDENCE)}
    value = {name: float(i) for i, name in enumerate(PRECEDENCE)}

    def profile(raw):
        raw["overrides"][KEY] = value["profile"]  # the lowest layer: always set
        if sets["profile_phase"]:
            raw["phases"][2].setdefault("overrides", {})[KEY] = value["profile_phase"]
        if sets["team"]:
            raw["team_overrides"]["minibatch"][KEY] = value["team"]

    def phase(raw):
        if sets["phase_fixed"]:
            raw["fixed"][KEY] = value["phase_fixed"]
        raw["lock"]["defaults"][KEY] = value["lock"]
        if not sets["lock"]:
            raw["lock"]["keys"].remove(KEY)

    edit("profiles/smoke.yaml", profile)
    edit("phases/phase2.yaml", phase)
    round_fixed = {KEY: value["round_fixed"]} if sets["round_fixed"] else {}
    trial = {KEY: value["trial"]} if sets["trial"] else {}
    return cdir, round_fixed, trial


@pytest.mark.parametrize("top", range(len(PRECEDENCE)), ids=PRECEDENCE)
def test_each_layer_wins_over_every_lower_one_in_the_trainer_command(tmp_path, top):
    cdir, round_fixed, trial = _configs(tmp_path, top)
    s = load_settings(2, profile="smoke", config_dir=cdir, run_dir=tmp_path / "runs" / "phase2-minibatch")
    args = trainer_args(s, {"loss.gue_nll_weight": 0.125, **trial}, round_fixed, "/out/3")
    sets = [args[i + 1] for i in range(len(args) - 1) if args[i] == "--set"]
    pairs = dict(a.split("=", 1) for a in sets)
    assert pairs[KEY] == repr(float(top)), f"{PRECEDENCE[top]} should win"
    assert len(sets) == len(pairs)  # each key once
    assert args[:3] == ("train", "--config", s.team_machines["minibatch"].trainer_config)
    assert args[-2:] == ("--output-dir", "/out/3")
    assert sets[0] == f"data.path={s.data_path}"
    assert pairs["loss.gue_nll_weight"] == "0.125"


def test_a_job_spec_carries_the_trial_and_its_round(tmp_path):
    s = load_settings(2, profile="smoke", run_dir=tmp_path / "phase2-minibatch")
    params = {"loss.gue_nll_weight": 0.125, "train.mode": "fullbatch"}
    spec = job_spec(s, "7", params, 3, "Weights", {"optim.lr": 0.5}, "/out/7")
    assert (spec.study, spec.trial_id, spec.attempt, spec.phase) == ("phase2-minibatch", "7", 3, 2)
    assert spec.team == "fullbatch"  # the trial's own train.mode (phase 3's control team)
    assert spec.labels == {"round": "weights"}
    assert spec.output_dir == "/out/7"
    assert spec.trainer_args == trainer_args(s, params, {"optim.lr": 0.5}, "/out/7")
