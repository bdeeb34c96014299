"""The CUDA path: bf16 autocast and device auto. Runs where torch sees a GPU (the trainer image on Vertex, a workstation)."""

from __future__ import annotations

import json

import pytest
import torch
from trainer.config import load_config
from trainer.training import run_trial

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA device: runs on GPU machines (the trainer image, a GPU workstation)",
)
@pytest.mark.parametrize("layer", ["graphconv", "sage", "gatv2"])
def test_a_trial_trains_on_cuda_with_bf16_autocast(tiny_config_file, tmp_path, layer):
    cfg = load_config(tiny_config_file, ["train.device=auto", f"model.layer={layer}"])
    out = tmp_path / "out"
    assert run_trial(cfg, str(out), echo=lambda line: None) == 0
    final = json.loads((out / "final.json").read_text())
    assert final["status"] == "completed" and final["extrapolation_error"] > 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert 0 < rows[-1]["peak_mem_bytes"] < torch.cuda.get_device_properties(0).total_memory
