"""The trial config: shipped files validate, extends/--set merge, every problem is one named line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from trainer.cli import main
from trainer.config import load_config
from trainer.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = [
    "configs/trainer/defaults.yaml",
    "configs/trainer/fullbatch.yaml",
    "configs/trainer/minibatch.yaml",
    "configs/smoke.yaml",
]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_validate(name):
    cfg = load_config(REPO / name)
    assert cfg.data.path  # resolved: $ZETA_SWARM_DATA or the repo's data/odlyzko


def test_team_files_set_their_mode_and_smoke_inherits_fullbatch():
    assert load_config(REPO / "configs/trainer/fullbatch.yaml").train.mode == "fullbatch"
    mini = load_config(REPO / "configs/trainer/minibatch.yaml")
    assert (mini.train.mode, mini.loss.rg_penalty_weight) == ("minibatch", 0.0)
    smoke = load_config(REPO / "configs/smoke.yaml")
    assert smoke.loss.rg_penalty_weight > 0 and smoke.train.epochs // smoke.train.eval_every >= 3


def _write(tmp_path, name, data) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_extends_merges_deeply_and_set_wins(tmp_path):
    _write(tmp_path, "base.yaml", {"model": {"hidden": 32, "depth": 4}, "optim": {"lr": 0.01}})
    top = _write(tmp_path, "top.yaml", {"extends": "base.yaml", "model": {"hidden": 8}})
    cfg = load_config(top, ["optim.lr=5e-4", "model.primes=[2,3,5]", "train.mode=minibatch"])
    assert (cfg.model.hidden, cfg.model.depth, cfg.optim.lr) == (8, 4, 5e-4)
    assert cfg.model.primes == [2, 3, 5] and cfg.train.mode == "minibatch"


def test_data_path_defaults_to_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ZETA_SWARM_DATA", "/somewhere/zeros")
    assert load_config(_write(tmp_path, "c.yaml", {})).data.path == "/somewhere/zeros"


@pytest.mark.parametrize(
    "primes", [[2, 3, 5], [2, 3, 5, 7], [2, 3, 5, 7, 11, 13], [2, 3, 5, 7, 11, 13, 17, 19], [11, 13, 17, 19]]
)
def test_seed_prime_sets_are_accepted(tmp_path, primes):
    assert load_config(_write(tmp_path, "c.yaml", {"model": {"primes": primes}})).model.primes == primes


def _error(path, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return str(info.value)


def test_errors_name_the_file_that_set_the_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "base.yaml", {"loss": {"gue_nll_weight": -1}})
    top = _write(
        tmp_path,
        "x.yaml",
        {"extends": "base.yaml", "optim": {"lr": "fast"}, "model": {"layer": "gcn", "colour": 1}},
    )
    lines = _error(top).splitlines()
    assert sorted(lines) == sorted(
        [
            "base.yaml: loss.gue_nll_weight: must be >= 0.0",
            "x.yaml: optim.lr: must be a number",
            "x.yaml: model.layer: must be one of 'graphconv', 'sage' or 'gatv2'",
            "x.yaml: model.colour: unknown key",
        ]
    )


def test_set_errors_name_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, "c.yaml", {})
    assert _error(path, ["optim.lr=-1"]) == "--set: optim.lr: must be > 0.0"
    assert (
        _error(path, ["optim.learning_rate=1"])
        == "--set optim.learning_rate: unknown key (optim.learning_rate)"
    )
    assert _error(path, ["nonsense"]) == "--set 'nonsense': expected key=value"
    assert _error(path, ["model.primes=[2,4]"]) == "--set: model.primes: not prime: [4]"


def test_cross_key_rules(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mini = {
        "train": {"mode": "minibatch", "num_clusters": 10, "clusters_per_step": 2},
        "loss": {"rg_penalty_weight": 0.1},
    }
    path = _write(tmp_path, "m.yaml", mini)
    assert _error(path).startswith("m.yaml: loss.rg_penalty_weight: must be 0 when train.mode is minibatch")
    assert load_config(path, ["loss.rg_scope=cluster"]).loss.rg_scope == "cluster"
    assert "train.clusters_per_step: must be <= train.num_clusters" in _error(
        path, ["train.clusters_per_step=11"]
    )
    full = _write(tmp_path, "f.yaml", {"train": {"num_clusters": 4}})
    assert _error(full) == "f.yaml: train.num_clusters: must be 1 when train.mode is fullbatch"


def test_bad_yaml_and_missing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _error(_write(tmp_path, "b.yaml", "model: [1,\n")).startswith("b.yaml: line ")
    assert _error(tmp_path / "none.yaml") == "none.yaml: no such config file"
    assert "extends cycle" in _error(_write(tmp_path, "loop.yaml", {"extends": "loop.yaml"}))


@pytest.mark.parametrize(
    ("settings", "overrides", "expected"),
    [
        ({"model": {"colour": "red"}}, [], "bad.yaml: model.colour: unknown key"),
        ({"train": {"epochs": "many"}}, [], "bad.yaml: train.epochs: must be an integer"),
        ({"loss": {"gue_nll_weight": -0.5}}, [], "bad.yaml: loss.gue_nll_weight: must be >= 0.0"),
        ({}, ["train.speed=3"], "--set train.speed: unknown key (train.speed)"),
        (
            {"train": {"checkpoint_layers": True}},
            [],
            "bad.yaml: train.checkpoint_layers: unknown key (renamed train.recompute_activations)",
        ),
        (
            {},
            ["train.checkpoint_layers=true"],
            "--set train.checkpoint_layers: unknown key (renamed train.recompute_activations) (train.checkpoint_layers)",
        ),
        ({}, ["baselines.prime_cutoff=1"], "--set: baselines.prime_cutoff: must be >= 2"),
        ({}, ["baselines.prime_cutoff=1000000000"], "--set: baselines.prime_cutoff: must be <= 100000000"),
        ({}, ["train.epochs=-1"], "--set: train.epochs: must be >= 0"),
        ({}, ["loss.mse_weight=.inf"], "--set: loss.mse_weight: must be a finite number"),
        ({}, ["seed=-1"], "--set: seed: must be >= 0"),
        ({}, [f"seed={2**64}"], "--set: seed: must be < 9223372036854775808"),
        (
            {},
            ["data.window_stride=50", "data.horizon=100"],
            "--set: data.window_stride: must be >= data.horizon",
        ),
        (
            {},
            ["model.explicit_feature=false"],
            "--set: model.explicit_feature: must be true with model.head residual",
        ),
        (
            {
                "train": {"mode": "minibatch", "num_clusters": 8, "clusters_per_step": 2},
                "loss": {"rg_penalty_weight": 1},
            },
            [],
            "bad.yaml: loss.rg_penalty_weight: must be 0 when train.mode is minibatch",
        ),
    ],
)
def test_cli_bad_config_exits_2_with_one_line(tmp_path, monkeypatch, settings, overrides, expected):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "bad.yaml", settings)
    args = ["train", "--config", "bad.yaml", "--output-dir", str(tmp_path / "out")]
    for item in overrides:
        args += ["--set", item]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"trainer: error: {expected}")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_missing_dataset_says_run_make_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "c.yaml", {"data": {"path": str(tmp_path / "nowhere")}})
    result = CliRunner().invoke(main, ["train", "--config", "c.yaml", "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "run `make data`" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_three_window_sets_never_share_a_zero_with_each_other_or_training():
    cfg = load_config(REPO / "configs/trainer/defaults.yaml")
    sets = cfg.window_sets(2_001_052)
    d = cfg.data
    assert [len(sets[k]) for k in ("val", "tune", "test")] == [d.val_windows, d.windows, d.test_windows]
    predicted = {k: [set(range(m + 1, m + d.horizon + 1)) for m in v] for k, v in sets.items()}
    every = [z for windows in predicted.values() for z in windows]
    assert sum(len(w) for w in every) == len(set().union(*every))  # no zero predicted twice
    train_and_val = set(range(d.train_start, d.train_start + d.train_count + d.val_count))
    assert not train_and_val & set().union(*every)
    # In this order of height: val, then tune, then test spread to the end of the data.
    assert max(sets["val"]) < min(sets["tune"]) and max(sets["tune"]) + d.horizon <= min(sets["test"])
    assert max(sets["test"]) + d.horizon == 2_001_052
    assert sets["tune"] == cfg.window_starts()


def test_duplicate_keys_and_binary_files_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dup.yaml").write_text("optim:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"^dup.yaml: line 3: invalid YAML \(duplicate key 'lr'\)$"):
        load_config(tmp_path / "dup.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"seed: \xff\xfe\x00")
    with pytest.raises(ConfigError, match=r"^bin.yaml: not a text file \(byte 6 is not UTF-8\)"):
        load_config(tmp_path / "bin.yaml")
