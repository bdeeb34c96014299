"""Fixtures for the trial tests: small real configs on the first 30,000 Odlyzko zeros."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def tiny_settings(data_path: Path) -> dict:
    """A trial that trains in seconds: 800 zeros from n = 2001; 2 val, 4 tune and 4 test windows of 50 zeros."""
    return {
        "seed": 3,
        "data": {
            "path": str(data_path),
            "train_start": 2001,
            "train_count": 800,
            "val_count": 200,
            "val_windows": 2,
            "windows": 4,
            "test_windows": 4,
            "horizon": 50,
            "window_stride": 200,
        },
        "model": {"primes": [2, 3, 5], "window": 8, "hidden": 16, "depth": 2},
        "loss": {"gue_nll_weight": 0.01, "gue_mmd_weight": 0.1, "rg_penalty_weight": 0.1},
        "optim": {"lr": 0.003, "warmup_steps": 2, "ema_decay": 0.5},
        "train": {"epochs": 4, "eval_every": 2, "device": "cpu", "cpu_threads": 1},
    }


@pytest.fixture
def tiny_config_file(odlyzko_small, tmp_path) -> Path:
    """A config file that extends the real configs/trainer/fullbatch.yaml with tiny_settings."""
    path = tmp_path / "tiny.yaml"
    settings = {"extends": str(REPO / "configs" / "trainer" / "fullbatch.yaml")} | tiny_settings(
        odlyzko_small
    )
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path
