"""The Riemann–Siegel generator: Z against mpmath, zeros against the Odlyzko table and
mpmath.zetazero, and count certification that refuses a missed zero."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import trainer.data.generate as generate_mod
from trainer.data.generate import accuracy_bound, generate_zeros
from trainer.data.gram import gram_points, turing_blocks
from trainer.data.odlyzko import TABLE_COUNT, load_table
from trainer.data.riemann_siegel import HardyZ, RiemannSiegelWindow, z_euler_maclaurin
from trainer.errors import DataError


@pytest.fixture(scope="module")
def table():
    return load_table()


def _siegelz(ts):
    with mpmath.workdps(30):
        return np.array([float(mpmath.siegelz(mpmath.mpf(t))) for t in ts])


def test_euler_maclaurin_matches_mpmath():
    t = np.array([9.7, 14.134725, 101.3, 777.7, 1999.9])
    assert np.abs(z_euler_maclaurin(t) - _siegelz(t)).max() < 2e-12


def test_riemann_siegel_window_matches_mpmath_at_random_heights():
    rng = np.random.default_rng(7)
    for base in (3e3, 8e4, 1.1e6):
        t = np.sort(base + rng.uniform(0, 4000, 2))
        z = RiemannSiegelWindow(t[0], t[-1])(t)
        # MATH.md §1.3: window-phase Z is good to ~1e-12; allow the Gabcke truncation at 3e3.
        assert np.abs(z - _siegelz(t)).max() < 5e-11


def test_hardy_z_switches_method_at_2000():
    t = np.array([1500.25, 1999.5, 2000.5, 2600.125])
    assert np.abs(HardyZ(t[0], t[-1])(t) - _siegelz(t)).max() < 5e-11


def test_window_refuses_heights_outside_it():
    window = RiemannSiegelWindow(5000.0, 5100.0)
    with pytest.raises(ValueError, match="outside this window"):
        window(np.array([5200.0]))


def test_gram_points_match_mpmath():
    m = np.array([-1, 0, 1, 126, 10_000, 1_000_000])
    want = np.array([float(mpmath.grampoint(int(k))) for k in m])
    assert np.allclose(gram_points(m), want, rtol=1e-15, atol=0)
    # MATH.md §2.1: g_-1 = 9.666908056130, g_0 = 17.845599540411, g_1 = 23.170282701246.
    assert gram_points([-1, 0, 1]) == pytest.approx(
        [9.666908056130, 17.845599540411, 23.170282701246], abs=1e-11
    )


def test_turing_block_counts_follow_math_md():
    assert [turing_blocks(t) for t in (1e3, 1e5, 1e6, 4e7, 1e10)] == [1, 2, 3, 3, 5]


def _check_range(table, start, count):
    zeros, stats = generate_zeros(start, count)
    want = table[start - 1 : start - 1 + count]
    assert zeros.shape == want.shape
    # Odlyzko's table is accurate to 4e-9; the generator to ~1e-10.
    assert np.abs(zeros - want).max() < 5e-9
    assert stats.zeros == count
    return zeros, stats


def test_first_zeros_including_the_first_gram_failures(table):
    # g_126 and g_134 are the first bad Gram points (MATH.md §2.1): zeros 126..135 need refinement.
    zeros, stats = _check_range(table, 1, 200)
    assert stats.refined_blocks >= 2
    assert zeros[0] == pytest.approx(14.134725141734693, abs=1e-10)


@pytest.mark.parametrize("start", [1_450, 9_871, 104_729, 1_000_003, TABLE_COUNT - 499])
def test_sampled_ranges_match_the_odlyzko_table(table, start):
    # start 1450: the chunk straddles t = 2000, where Euler–Maclaurin hands over to Riemann–Siegel.
    _, stats = _check_range(table, start, 500)
    assert stats.z_evals / stats.zeros < 12  # bracketing + secant, not bisection


def test_closest_pair_in_reach(table):
    # The smallest gap among the first 1.2e6 zeros: Gram's law fails around it and the two
    # zeros share one Gram interval; both must come out, in order, with the right indices.
    head = table[:1_200_000]
    n = int(np.argmin(np.diff(head))) + 1  # gamma_n, gamma_{n+1} are the pair
    zeros, _ = _check_range(table, n - 40, 80)
    assert zeros[41] - zeros[40] == pytest.approx(head[n] - head[n - 1], abs=1e-8)


@pytest.mark.parametrize("n", [1_000 + int(k) for k in np.random.default_rng(11).integers(0, 4000, 2)])
def test_matches_mpmath_zetazero(n):
    zeros, _ = generate_zeros(n, 1)
    assert zeros[0] == pytest.approx(float(mpmath.zetazero(n).imag), abs=1e-9)


def test_chunks_join_without_gaps_or_repeats(table):
    zeros, stats = generate_zeros(50_000, 700, chunk=250)
    assert stats.chunks == 3
    assert np.abs(zeros - table[49_999:50_699]).max() < 5e-9


def test_a_dropped_zero_is_a_data_error(monkeypatch):
    real = generate_mod._sign_change_brackets

    def drop_one(*args):
        lo, hi, f_lo, f_hi = real(*args)
        keep = np.arange(lo.size) != lo.size // 2
        return lo[keep], hi[keep], f_lo[keep], f_hi[keep]

    monkeypatch.setattr(generate_mod, "_sign_change_brackets", drop_one)
    with pytest.raises(DataError, match=r"Turing's method proves exactly \d+ zeros there"):
        generate_zeros(20_000, 300)


def test_an_invented_zero_is_a_data_error(monkeypatch):
    real = generate_mod._sign_change_brackets

    def add_one(*args):
        lo, hi, f_lo, f_hi = real(*args)
        return (
            np.append(lo, hi[-1] + 0.01),
            np.append(hi, hi[-1] + 0.02),
            np.append(f_lo, 1.0),
            np.append(f_hi, -1.0),
        )

    monkeypatch.setattr(generate_mod, "_sign_change_brackets", add_one)
    with pytest.raises(DataError, match="Turing's method proves exactly"):
        generate_zeros(20_000, 300)


def test_unrefined_gram_failures_are_not_silently_skipped(monkeypatch):
    # Without refinement the blocks where Gram's law fails stay short of zeros.
    monkeypatch.setattr(generate_mod, "_MAX_DEPTH", 0)
    with pytest.raises(DataError):
        generate_zeros(120, 20)


def test_bad_arguments():
    with pytest.raises(DataError, match="--start >= 1"):
        generate_zeros(0, 5)
    with pytest.raises(DataError, match="--count >= 1"):
        generate_zeros(5, 0)


def test_accuracy_bound_grows_with_float64_spacing():
    assert accuracy_bound(np.array([100.0, 200.0])) == 1e-9
    assert accuracy_bound(np.array([1e10])) == pytest.approx(2 * np.spacing(1e10))


@pytest.mark.gpu
def test_cuda_matches_cpu():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device; runs on the GPU test machine (marker gpu)")
    cpu, _ = generate_zeros(1_000_000, 2000, device="cpu")
    gpu, _ = generate_zeros(1_000_000, 2000, device="cuda")
    assert np.abs(cpu - gpu).max() < 1e-9


def test_turing_anchors_need_k_rosser_blocks_on_both_sides():
    # 9 good Gram points (m = 10..18) bound 8 blocks; block 4 (from m=14 to m=15) failed.
    ok = np.array([True, True, True, True, False, True, True, True])
    proven = generate_mod._anchors(np.arange(10, 19), ok, 2, bottom=False)
    assert proven.tolist() == [False, False, True, False, False, False, False, False, False]
    proven = generate_mod._anchors(np.arange(10, 17), np.ones(6, dtype=bool), 2, bottom=False)
    assert proven.tolist() == [False, False, True, True, True, False, False]
    # At the bottom, N(g_-1) = 0 is known without Turing's method.
    proven = generate_mod._anchors(np.arange(-1, 6), np.ones(6, dtype=bool), 2, bottom=True)
    assert proven.tolist() == [True, False, True, True, True, False, False]


def test_first_rosser_rule_exception_is_resolved():
    # The Gram block starting at g_13999525 holds two zeros fewer than its length (MATH.md §2.3);
    # the missing pair sits in the next block. Merging the two finds all zeros, still certified.
    zeros, stats = generate_zeros(13_999_500, 60)
    assert stats.max_depth > generate_mod._MERGE_AT
    assert np.all(np.diff(zeros) > 0)
    assert zeros[26] == pytest.approx(float(mpmath.zetazero(13_999_526).imag), abs=2e-9)


def test_parallel_pieces_join_into_the_same_zeros(table):
    # One spawned process per piece, each certifying its own count: the joined array is the range.
    from trainer.data.generate import generate_zeros_parallel

    zeros, stats = generate_zeros_parallel(50_001, 700, workers=2, chunk=300)
    assert zeros.size == stats.zeros == 700 and stats.chunks == 4  # 350 + 350, chunks of 300
    assert np.abs(zeros - table[50_000:50_700]).max() < 5e-9
    assert len(stats.anchors) == 4
