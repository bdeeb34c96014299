"""Unfolding: theta against mpmath, the inverse of N̄, and invariants on real zeros."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trainer.data.dataset import open_dataset
from trainer.unfolding import (
    fluctuations,
    inverse_smooth_count,
    smooth_count,
    spacings,
    theta,
    theta_prime,
    unfold,
)


@pytest.mark.parametrize("t", [2.0, 7.5, 9.999, 10.0, 14.134725, 100.0, 5.0e3, 1.0e6, 4.0e7])
def test_theta_matches_mpmath(t):
    want = float(mpmath.siegeltheta(t))
    # MATH.md §1.1: float64-exact, i.e. within a few ulp of theta itself.
    assert abs(theta([t])[0] - want) <= 4 * math.ulp(abs(want)) + 1e-13


def test_theta_prime_matches_finite_difference():
    t = np.array([10.0, 1e3, 1e6])
    h = 1e-4 * t
    numeric = (theta(t + h) - theta(t - h)) / (2 * h)
    assert np.allclose(theta_prime(t), numeric, rtol=1e-7)


def test_inverse_smooth_count_round_trip():
    t = np.geomspace(10.0, 1e9, 200)
    assert np.allclose(inverse_smooth_count(smooth_count(t)), t, rtol=1e-13, atol=1e-9)


def test_inverse_smooth_count_refuses_below_domain():
    with pytest.raises(ValueError, match="N̄ at t = 10"):
        inverse_smooth_count([0.0])
    with pytest.raises(ValueError):
        inverse_smooth_count([np.nan])


def test_first_zero_unfolds_near_one_half(odlyzko_small):
    ds = open_dataset(odlyzko_small)
    x = unfold(ds.ordinates(1, 11))
    # delta_n = x_n - (n - 1/2) is bounded by 1.33 over the whole table (MATH.md §3).
    d = fluctuations(x, 1)
    assert np.all(np.abs(d) < 0.5)
    assert abs(x[0] - 0.5) < 0.2


def test_mean_spacing_and_fluctuation_statistics_on_real_zeros(odlyzko_small):
    ds = open_dataset(odlyzko_small)
    x = unfold(ds.ordinates(5000, 15000))
    s = spacings(x)
    d = fluctuations(x, 5000)
    # MATH.md §3, window [5e3, 1.5e4): mean s 0.99996, std s 0.3969, std delta 0.2992.
    assert s.size == x.size - 1
    assert abs(s.mean() - 1) < 2e-4
    assert abs(s.std() - 0.3969) < 2e-3
    assert abs(d.std() - 0.2992) < 2e-3
    assert abs(d.mean()) < 0.01


@settings(max_examples=60, deadline=None)
@given(
    st.floats(min_value=10.0, max_value=1e8),
    st.lists(st.floats(min_value=1e-6, max_value=50.0), min_size=1, max_size=60),
)
def test_unfold_is_monotone(t0, gaps):
    # Real zeros are never closer than ~1e-3 (Odlyzko table: min spacing 0.013 unfolded), so
    # gaps down to 1e-6 cover them with margin; below float64 rounding of theta nothing can hold.
    gamma = t0 + np.cumsum(gaps)
    x = unfold(gamma)
    assert np.all(np.diff(x) > 0)
    assert np.all(spacings(x) > 0)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=29_000 - 2000), st.integers(min_value=500, max_value=2000))
def test_mean_spacing_tends_to_one(odlyzko_small, start, length):
    ds = open_dataset(odlyzko_small)
    x = unfold(ds.ordinates(start, start + length))
    # The mean spacing telescopes to (x_last - x_first)/(L-1) = 1 + (delta_last - delta_first)/(L-1),
    # and |delta| <= 1.33, so it converges to 1 like 2.7/L.
    assert abs(spacings(x).mean() - 1) <= 2.7 / (length - 1)
