"""trainer.training.apply_process_settings: what a trial sets process-wide, and that it is all restored."""

from __future__ import annotations

import torch
from trainer.training import apply_process_settings


def _state():
    return (
        torch.are_deterministic_algorithms_enabled(),
        torch.utils.deterministic.fill_uninitialized_memory,
        torch.get_num_threads(),
    )


def test_cpu_trial_is_deterministic_without_the_nan_fill_and_everything_comes_back():
    before = _state()
    restore = apply_process_settings(torch.device("cpu"), cpu_threads=1)
    assert _state() == (True, False, 1)
    restore()
    assert _state() == before


def test_cuda_device_leaves_the_cpu_determinism_alone():
    before = _state()
    restore = apply_process_settings(torch.device("cuda"), cpu_threads=0)
    assert _state() == before
    restore()
    assert _state() == before
