"""trainer.training.apply_process_settings: what a trial sets process-wide, and that it is all restored."""

from __future__ import annotations

import ctypes

import pytest
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


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
        )
    ] + [("keepcost", ctypes.c_size_t)]


def _mapped_blocks() -> int:
    """How many blocks glibc malloc holds as their own mmap (mallinfo2().hblks)."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    return libc.mallinfo2().hblks


@pytest.mark.skipif(
    not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="needs glibc >= 2.33 (Linux: CI, the image)"
)
def test_a_cpu_trial_keeps_large_blocks_in_the_heap_and_restore_maps_them_again():
    restore = apply_process_settings(torch.device("cpu"), cpu_threads=0)
    try:
        before = _mapped_blocks()
        big = torch.empty(64 << 20, dtype=torch.uint8)  # over glibc's largest mmap threshold (32 MB)
        assert _mapped_blocks() == before
        del big
    finally:
        restore()
    before = _mapped_blocks()
    big = torch.empty(64 << 20, dtype=torch.uint8)
    assert _mapped_blocks() == before + 1
    del big
