"""configs/experiments/compare.yaml resolves into the three arms the issue asks for, and bad
experiment files or flags are one-line ConfigErrors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from orchestrator.cli import main
from orchestrator.compare import load_design, write_design
from orchestrator.errors import ConfigError

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "experiments" / "compare.yaml"


def test_default_profile_gives_three_arms_with_the_same_budget():
    d = load_design(CONFIG, "default", "local")
    assert d.train_count == 10000 and len(d.seeds) >= 3
    by_role = {a.role: a for a in d.arms}
    assert set(by_role) == {"rg", "no_rg", "minibatch"}
    assert by_role["rg"].overrides["loss.rg_penalty_weight"] > 0
    assert by_role["no_rg"].overrides["loss.rg_penalty_weight"] == 0
    assert by_role["rg"].team == by_role["no_rg"].team == "fullbatch"
    assert by_role["minibatch"].overrides["train.mode"] == "minibatch"
    # The same budget: the same data and loss weights, and the same number of optimizer steps.
    shared = ("data.train_count", "loss.gue_nll_weight", "loss.gue_mmd_weight", "loss.mse_weight")
    for key in shared:
        assert len({a.overrides[key] for a in d.arms}) == 1, key
    mb = by_role["minibatch"].overrides
    steps_per_epoch = -(-mb["train.num_clusters"] // mb["train.clusters_per_step"])
    assert by_role["rg"].overrides["train.epochs"] == d.steps == mb["train.epochs"] * steps_per_epoch
    # The ablation differs from the full arm in rg_penalty_weight only.
    diff = {
        k
        for k in by_role["rg"].overrides.keys() | by_role["no_rg"].overrides.keys()
        if by_role["rg"].overrides.get(k) != by_role["no_rg"].overrides.get(k)
    }
    assert diff == {"loss.rg_penalty_weight"}


def test_smoke_profile_and_flags_override():
    d = load_design(CONFIG, "smoke", "vertex", train_count=3000, seeds=2, parallel=3)
    assert (d.train_count, d.seeds, d.parallel, d.backend) == (3000, d.seeds[:2], 3, "vertex")
    assert all(a.overrides["data.train_count"] == 3000 for a in d.arms)


def _bad(tmp_path, mutate) -> Path:
    raw = yaml.safe_load(CONFIG.read_text())
    mutate(raw)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.pop("train_count"), r"exp.yaml:\d+: train_count: Field required"),
        (lambda r: r["arms"]["t1-rg"].update(role="both"), r"arms.t1-rg.role: Input should be"),
        (
            lambda r: r["arms"]["t1-no-rg"].update(role="rg"),
            r"exactly one arm with role rg and one with role no_rg",
        ),
        (lambda r: r["profiles"]["smoke"].update(colour="red"), r"profiles.smoke.colour: unknown key"),
        (
            lambda r: r["arms"].update({"T1 RG": r["arms"].pop("t1-rg")}),
            r"arms.T1 RG: names must be lowercase",
        ),
        (
            lambda r: r["arms"]["t2-minibatch"]["set"].pop("train.num_clusters"),
            r"must set train.num_clusters",
        ),
        (
            lambda r: r["set"].update({"train.epochs": 5}),
            r"set.train.epochs: set it via profiles.<name>.steps",
        ),
        (lambda r: r["profiles"]["smoke"].pop("steps"), r"profiles.smoke.steps: Field required"),
        (
            lambda r: r["profiles"]["smoke"].update(steps=150),
            r"steps: 150 is not a whole number of epochs of arm t2",
        ),
    ],
)
def test_bad_experiment_file(tmp_path, mutate, message):
    with pytest.raises(ConfigError, match=message) as e:
        load_design(_bad(tmp_path, mutate), "smoke", "local")
    assert "\n" not in str(e.value) and re.search(r"exp\.yaml:\d+: ", str(e.value))  # file:line


def test_bad_flags():
    with pytest.raises(ConfigError, match="no profile 'huge'"):
        load_design(CONFIG, "huge", "local")
    with pytest.raises(ConfigError, match="--seeds: 1 must be between 2"):
        load_design(CONFIG, "default", "local", seeds=1)


def test_experiment_json_is_written_once_and_guards_the_run_dir(tmp_path):
    d = load_design(CONFIG, "smoke", "local")
    write_design(tmp_path, d)
    saved = json.loads((tmp_path / "experiment.json").read_text())
    assert [a["role"] for a in saved["arms"]] == [a.role for a in d.arms]
    write_design(tmp_path, d)  # same experiment: resumes
    other = load_design(CONFIG, "smoke", "local", train_count=4000)
    with pytest.raises(ConfigError, match=r"holds a different experiment \(differs in arms, train_count\)"):
        write_design(tmp_path, other)


def test_cli_bad_profile_exits_2_with_one_line(tmp_path):
    result = CliRunner().invoke(
        main, ["compare", "--config", str(CONFIG), "--profile", "huge", "--run-dir", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "no profile 'huge'" in result.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("backend", ["local", "vertex"])
@pytest.mark.parametrize("profile", ["smoke", "default"])
def test_every_trial_command_carries_its_arms_budget(tmp_path, profile, backend):
    """The engine's trainer command for each arm: the arm's overrides win over the swarm profile's
    (including its per-team ones), each study runs the seeds with early stopping off."""
    from orchestrator.compare import arm_settings
    from orchestrator.trial_command import trainer_args

    design = load_design(CONFIG, profile, backend)
    for arm in design.arms:
        # A cloud trial reads its zeros from the data bucket (tests/fixtures/infra-outputs.json).
        infra = str(CONFIG.parents[2] / "tests" / "fixtures" / "infra-outputs.json")
        s = arm_settings(design, arm, tmp_path, data_path=str(tmp_path / "zeros"), infra_outputs=infra)
        assert (s.study, s.run_dir, s.backend.name) == (
            f"compare-{arm.name}",
            str(tmp_path / arm.name),
            backend,
        )
        assert not s.early_stopping.baseline_sigma.enabled and not s.early_stopping.median.enabled
        assert s.max_trials == len(design.seeds) and s.writes_lock == []
        plan = s.rounds[0]
        assert plan.points == [{"seed": x} for x in design.seeds]
        args = trainer_args(s, {"seed": design.seeds[0]}, plan.fixed, "/out/0")
        last: dict[str, str] = {}
        for flag, value in zip(args, args[1:], strict=False):
            if flag == "--set":
                key, _, v = value.partition("=")
                last[key] = v
        assert last["seed"] == str(design.seeds[0])
        local = str((tmp_path / "zeros").resolve())
        assert last["data.path"] == (local if backend == "local" else "gs://zs-zeta-swarm-test-data/zeros")
        for key, value in arm.overrides.items():
            assert yaml.safe_load(last[key]) == value, (arm.name, key)
        assert args[args.index("--config") + 1] == s.team_machines[arm.team].trainer_config
