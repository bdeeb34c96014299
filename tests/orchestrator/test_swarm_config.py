"""The swarm configuration: the shipped files load for every phase, team and profile; broken files
are reported all at once, one line each with file, line and key; nothing is launched."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from orchestrator.cli import main
from orchestrator.errors import ConfigError
from orchestrator.paths import CONFIG_DIR
from orchestrator.settings_loader import load_settings


@pytest.mark.parametrize("profile", ["default", "smoke"])
@pytest.mark.parametrize("team", ["fullbatch", "minibatch"])
@pytest.mark.parametrize("phase", [1, 2, 3])
def test_shipped_configs_resolve(phase, team, profile, tmp_path):
    s = load_settings(phase, team=team, profile=profile, run_dir=tmp_path / f"phase{phase}-{team}")
    assert s.study == f"phase{phase}-{team}"
    assert s.gpu_hour_cap > 0 and s.price_per_hour > 0
    assert Path(s.trainer_config).exists()
    assert s.team_machines[team].overrides["train.mode"] == team
    machine = {
        "fullbatch": "a2-ultragpu-1g + 1 x NVIDIA_A100_80GB",
        "minibatch": "g2-standard-8 + 1 x NVIDIA_L4",
    }
    assert s.machine == machine[team]


def test_phase_contents_match_the_design():
    p1 = load_settings(1, profile="default")
    primes, lr = p1.rounds
    assert [p["model.primes"] for p in primes.points] == [
        "[2,3,5]",
        "[2,3,5,7]",
        "[2,3,5,7,11,13]",
        "[2,3,5,7,11,13,17,19]",
        "[11,13,17,19]",
    ]
    assert {p["optim.lr"] for p in primes.points} == {1e-3}
    assert (
        p1.overrides["loss.mse_weight"],
        p1.overrides["loss.gue_nll_weight"],
        p1.overrides["loss.gue_mmd_weight"],
    ) == (1.0, 0.02, 0.05)
    assert sorted(p["optim.lr"] for p in lr.points) == [5e-5, 5e-4, 1e-3]
    assert {p["optim.scheduler"] for p in lr.points} == {"cosine"} and lr.carry == ["model.primes"]
    assert p1.writes_lock == ["model.primes", "optim.lr", "optim.scheduler"]
    p2 = load_settings(2, profile="default")
    (weights,) = p2.rounds
    assert {(p.name, p.low, p.high, p.log) for p in weights.space} == {
        ("loss.gue_nll_weight", 1e-3, 1.0, True),
        ("loss.gue_mmd_weight", 1e-2, 10.0, True),
    }
    assert p2.overrides["loss.mse_weight"] == 1.0


def test_phase2_without_a_lock_uses_the_documented_defaults_and_says_so(tmp_path):
    s = load_settings(2, run_dir=tmp_path / "phase2-minibatch")
    assert s.lock_source.startswith("defaults")
    assert s.overrides["model.primes"] == [2, 3, 5, 7, 11, 13]
    (tmp_path / "phase1-minibatch").mkdir()
    (tmp_path / "phase1-minibatch" / "lock.yaml").write_text(
        "winners: {model.primes: [2, 3, 5], optim.lr: 0.0005, optim.scheduler: cosine}\n"
    )
    s = load_settings(2, run_dir=tmp_path / "phase2-minibatch")
    assert s.lock_source.endswith("lock.yaml") and s.overrides["model.primes"] == [2, 3, 5]
    assert s.overrides["optim.lr"] == 0.0005


@pytest.fixture
def broken_configs(tmp_path) -> Path:
    cdir = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, cdir)
    phase2 = cdir / "phases" / "phase2.yaml"
    text = phase2.read_text()
    text = text.replace(
        "loss.gue_nll_weight: {low: 1.0e-3, high: 1.0, log: true}",
        "loss.gue_nll_weight: {low: 1.0, high: 1.0e-3, log: true}",
    )
    text = text.replace("max_retries: 2", "max_retries: 2\nmax_retrys: 3")
    phase2.write_text(text)
    team = cdir / "teams" / "minibatch.yaml"
    team.write_text(team.read_text().replace("accelerator_count: 1", "accelerator_count: one"))
    budgets = cdir / "budgets.yaml"
    budgets.write_text(budgets.read_text().replace("  2: 400", "  2: -5"))
    return cdir


def test_every_problem_is_reported_at_once_with_file_line_and_key(broken_configs):
    with pytest.raises(ConfigError) as e:
        load_settings(2, config_dir=broken_configs)
    lines = str(e.value).splitlines()
    assert lines[0].startswith("4 problems") and "nothing was launched" in lines[0]
    body = "\n".join(lines[1:])
    assert "phases/phase2.yaml:" in body and "max_retrys: unknown key" in body
    assert "rounds.0.space.loss.gue_nll_weight" in body and "must be below high" in body
    assert "teams/minibatch.yaml:8: accelerator_count:" in body
    assert "budgets.yaml:" in body and "gpu_hour_caps.2" in body
    text = (broken_configs / "phases" / "phase2.yaml").read_text().splitlines()
    line_no = next(i for i, line in enumerate(text, 1) if line.startswith("max_retrys"))
    assert f"phases/phase2.yaml:{line_no}: max_retrys" in body


def test_bad_flags_and_missing_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_settings(2, team="team3", profile="nope", backend="cloud")
    msg = str(e.value)
    assert (
        "--team: 'team3' is not a team" in msg and "--profile: 'nope'" in msg and "--backend: 'cloud'" in msg
    )


def test_cli_exits_2_and_launches_nothing_on_a_bad_config(tmp_path, monkeypatch, broken_configs):
    monkeypatch.setattr("orchestrator.settings_loader.CONFIG_DIR", broken_configs)
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(main, ["swarm", "--phase", "2", "--run-dir", str(run_dir)])
    assert result.exit_code == 2
    assert "orchestrator: error: 4 problems" in result.output
    assert not run_dir.exists()


def test_the_cloud_profile_keeps_all_of_team_2s_cluster_nodes_after_the_first_epoch(odlyzko_small, tmp_path):
    """Team 2's training range on Vertex (1e7 zeros) fits its node cache: a cluster the cache
    drops is built again on the host in every later epoch (bench/gpu.sh, cloud-range-512).
    Bytes per node from a real trial of the cloud profile's model on a few real zeros."""
    import torch
    from orchestrator.trial_command import trainer_values
    from orchestrator.values import set_arg
    from trainer.config import load_config
    from trainer.data.dataset import open_dataset
    from trainer.training import Trial

    s = load_settings(2, team="minibatch", profile="cloud", run_dir=tmp_path / "phase2-minibatch")
    trial = [set_arg(k, v) for k, v in trainer_values(s, {}, {}).items()]  # as the swarm sets them
    cloud = load_config(s.trainer_config, trial)
    small = [
        f"data.path={odlyzko_small}",
        "data.train_start=2001",
        "data.train_count=4000",
        "data.val_count=200",
        "data.val_windows=2",
        "data.windows=2",
        "data.test_windows=2",
        "data.window_stride=200",
        "train.num_clusters=4",
        "train.clusters_per_step=2",
        "train.device=cpu",
    ]
    cfg = load_config(s.trainer_config, [*trial, *small])
    assert cfg.model == cloud.model  # the nodes of the cloud profile's model, on fewer zeros
    nodes = Trial(cfg, open_dataset(cfg.data.path), torch.device("cpu"))._cluster(0)
    per_node = nodes.nbytes / 1000
    assert cloud.data.train_count * per_node <= cloud.train.node_cache_mb * 2**20
