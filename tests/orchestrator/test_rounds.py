"""Round kinds behind one protocol (orchestrator.rounds): every `kind:` a phase file may name has
one class, and what a phase does with a round comes from that class."""

from __future__ import annotations

import typing

import pytest
from orchestrator.errors import ConfigError
from orchestrator.settings_loader import load_settings

from orchestrator import rounds


def test_every_kind_name_is_a_yaml_tag_and_has_its_class():
    tags = set()
    for model in typing.get_args(typing.get_args(rounds.RoundEntry)[0]):
        tags |= set(typing.get_args(model.model_fields["kind"].annotation))
    # every kind but those no phase file names (the playbook's promote rounds, which it makes itself)
    assert tags == {name for name, kind in rounds.KINDS.items() if kind.models}
    assert {name for name, kind in rounds.KINDS.items() if not kind.models} == {"promote"}
    for name, kind in rounds.KINDS.items():
        assert name in kind.names


def test_a_fixed_design_carries_each_winner_into_every_point():
    plan = rounds.RoundPlan(
        name="lr", kind="points", space=[], points=[{"optim.lr": 1e-3}, {"optim.lr": 1e-4}], fixed={},
        carry=["model.primes"],
    )  # fmt: skip
    kind = rounds.kind_of(plan)
    got = kind.points(plan, None, [{"model.primes": "[2,3]", "other": 1}])
    assert got == [{"optim.lr": 1e-3, "model.primes": "[2,3]"}, {"optim.lr": 1e-4, "model.primes": "[2,3]"}]
    assert kind.points(plan, None, []) == plan.points  # no winner yet (a dry run's first look)
    assert not kind.suggests


def test_the_phases_rounds_come_out_of_their_kinds(tmp_path):
    s1 = load_settings(1, profile="smoke", run_dir=tmp_path / "phase1-minibatch")
    assert [(r.name, r.kind) for r in s1.rounds] == [("primes", "points"), ("lr", "points")]
    # one space for every fixed design of the phase (one Optuna study)
    assert s1.rounds[0].space == s1.rounds[1].space
    assert sum(rounds.kind_of(r).estimated_trials(r, s1) for r in s1.rounds) == 8

    s2 = load_settings(2, profile="smoke", run_dir=tmp_path / "phase2-minibatch")
    (bayes,) = s2.rounds
    kind = rounds.kind_of(bayes)
    assert kind.suggests and kind.points(bayes, s2, []) is None
    assert [p.name for p in kind.space(bayes, None)] == ["loss.gue_nll_weight", "loss.gue_mmd_weight"]
    assert kind.estimated_trials(bayes, s2) == s2.max_trials == 3
    assert "loss.gue_nll_weight in [0.001, 1] log" in kind.describe(bayes, s2)
    assert rounds.whole_study(s2)[1] is None

    s3 = load_settings(3, profile="smoke", run_dir=tmp_path / "phase3-minibatch")
    (champ,) = s3.rounds
    # top 2 x 2 replicas + the fullbatch control + the MSE-only arm, 2 seeds each
    assert rounds.kind_of(champ).estimated_trials(champ, s3) == 8
    assert rounds.whole_study(s3) == ([], [])
    with pytest.raises(ConfigError, match="phase 3 needs phase 2's results"):
        rounds.kind_of(champ).points(champ, s3, [])
