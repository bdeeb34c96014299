"""trainer.training.apply_process_settings: what a trial sets process-wide, and that it is all restored."""

from __future__ import annotations

import os
import subprocess
import sys

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


def _omp_wait_policy(**env):
    """OMP_WAIT_POLICY in a fresh process that imports the trainer package, then torch."""
    code = "import trainer, os, torch; print(os.environ.get('OMP_WAIT_POLICY'))"
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_the_trainer_asks_openmp_for_a_passive_wait_unless_told_otherwise():
    """Torch's OpenMP workers would otherwise spin on the cores the kernels' threads need."""
    assert _omp_wait_policy() == "PASSIVE"
    assert _omp_wait_policy(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
