"""The loss weights of a config reach compute_losses under their own names: a config that turns on
exactly one loss (weight 1, the others 0) trains on exactly that loss, through the real Trial."""

from __future__ import annotations

import pytest
import torch
from trainer.config import load_config
from trainer.data.dataset import open_dataset
from trainer.losses import LOSS_NAMES
from trainer.training import Trial


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_a_config_with_one_loss_on_trains_on_exactly_that_loss(tiny_config_file, name):
    weights = {f"loss.{n}_weight={1.0 if n == name else 0.0}" for n in LOSS_NAMES}
    cfg = load_config(tiny_config_file, sorted(weights))
    trial = Trial(cfg, open_dataset(cfg.data.path), torch.device("cpu"))
    batch = trial.batch(range(len(trial.clusters)))
    total, parts = trial.loss(trial.model, batch, torch.Generator().manual_seed(0))
    assert total.item() == parts[name].item()
    assert parts[name].item() != 0.0
    # The other distributional/multi-scale losses are not even computed (reported as 0).
    for other in ("gue_mmd", "rg_penalty"):
        if other != name:
            assert parts[other].item() == 0.0
    # mse and gue_nll are always computed; they differ from each other, so a swap would show.
    assert parts["mse"].item() != parts["gue_nll"].item()
