"""The dataset format: write, open, verify, and every way a dataset can be bad."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from trainer.data.dataset import (
    MANIFEST_FILE,
    ZEROS_FILE,
    array_sha256,
    open_dataset,
    verify_dataset,
    write_dataset,
)
from trainer.data.odlyzko import load_table
from trainer.errors import DataError


@pytest.fixture(scope="module")
def table_head():
    return load_table(5000)


def test_open_small_odlyzko(odlyzko_small):
    ds = open_dataset(odlyzko_small)
    assert ds.first_index == 1
    assert ds.count == 30_000
    assert ds.last_index == 30_000
    assert ds.ordinates(1, 2)[0] == pytest.approx(14.134725141734693, abs=4e-9)
    copy = ds.ordinates(100, 110)
    assert copy.shape == (10,) and copy.dtype == np.float64
    assert not np.shares_memory(copy, ds.shard_array(0))  # a copy: the mapped pages are released
    assert np.array_equal(ds.take([109, 100, 100]), copy[[9, 0, 0]])
    assert ds.manifest["source"] == "odlyzko"
    assert ds.manifest["sha256"] == array_sha256(ds.ordinates(1, 30_001))


def test_ordinates_out_of_range(odlyzko_small):
    ds = open_dataset(odlyzko_small)
    for start, stop in [(0, 5), (29_999, 30_002), (10, 10)]:
        with pytest.raises(DataError, match="outside the dataset's 1..30000"):
            ds.ordinates(start, stop)


def test_verify_full(odlyzko_small):
    summary = verify_dataset(odlyzko_small, full=True)
    assert summary["count"] == 30_000
    assert summary["sha256_ok"] is True
    assert 0.5 < summary["max_abs_delta"] < 1.34


def test_write_with_offset_index_and_reopen(tmp_path, table_head):
    out = tmp_path / "mid"
    manifest = write_dataset(
        out, table_head[999:2000], source="test", first_index=1000, abs_accuracy=4e-9, params={"a": 1}
    )
    assert manifest["count"] == 1001
    ds = open_dataset(out)
    assert ds.first_index == 1000 and ds.last_index == 2000
    assert ds.ordinates(2000, 2001)[0] == table_head[1999]
    assert json.loads((out / MANIFEST_FILE).read_text())["params"] == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["mid"]  # no temporary directory left


def test_rewrite_same_is_noop_but_different_is_refused(tmp_path, table_head):
    out = tmp_path / "d"
    first = write_dataset(out, table_head[:100], source="a", first_index=1, abs_accuracy=1e-9)
    assert write_dataset(out, table_head[:100], source="a", first_index=1, abs_accuracy=1e-9) == first
    with pytest.raises(DataError, match="already exists and holds something else"):
        write_dataset(out, table_head[:101], source="a", first_index=1, abs_accuracy=1e-9)
    assert open_dataset(out).count == 100


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda z: np.where(np.arange(z.size) == 700, np.nan, z), "zero n=701 is nan"),
        (lambda z: np.where(np.arange(z.size) == 700, np.inf, z), "zero n=701 is inf"),
        (lambda z: np.insert(z, 300, z[300]), "not strictly increasing at n=302"),
        (lambda z: z[::-1].copy(), "not strictly increasing at n=2"),
        (lambda z: np.delete(z, 2500), "disagree with the smooth counting function"),
        (lambda z: np.insert(z, 2501, (z[2500] + z[2501]) / 2), "disagree with the smooth counting function"),
        (lambda z: z[1:], "zeros n=1..64 disagree"),
        (lambda z: z[:0], "no zeros"),
    ],
)
def test_write_refuses_bad_zeros_and_leaves_nothing(tmp_path, table_head, mutate, message):
    with pytest.raises(DataError, match=message):
        write_dataset(
            tmp_path / "bad", mutate(table_head.copy()), source="t", first_index=1, abs_accuracy=1e-9
        )
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def good_copy(tmp_path, odlyzko_small):
    out = tmp_path / "copy"
    shutil.copytree(odlyzko_small, out)
    return out


def _edit_manifest(path, **changes):
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    for key, value in changes.items():
        if value is None:
            manifest.pop(key)
        else:
            manifest[key] = value
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"count": 29_999}, "holds 30000 zeros .* the manifest says 29999"),
        ({"first_index": 2}, "disagree with the smooth counting function"),
        ({"first_index": 0}, "'first_index' must be >= 1"),
        ({"sha256": None}, "missing key 'sha256'"),
        ({"count": "30000"}, "key 'count' has the wrong type"),
    ],
)
def test_open_refuses_bad_manifest(good_copy, changes, message):
    _edit_manifest(good_copy, **changes)
    with pytest.raises(DataError, match=message):
        open_dataset(good_copy)


def test_open_refuses_broken_files(good_copy):
    (good_copy / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(DataError, match=r"manifest\.json: not valid JSON \(line 1"):
        open_dataset(good_copy)


def test_missing_parts(tmp_path, good_copy):
    with pytest.raises(DataError, match="no such dataset directory"):
        open_dataset(tmp_path / "nope")
    (good_copy / ZEROS_FILE).unlink()
    with pytest.raises(DataError, match=r"zeros\.npy: no such file"):
        open_dataset(good_copy)


def test_sha_mismatch_found_by_full_verify_only(good_copy):
    zeros = np.load(good_copy / ZEROS_FILE)
    zeros[12_345] += 1e-7  # still increasing and consistent: only the hash can tell
    np.save(good_copy / ZEROS_FILE, zeros)
    assert open_dataset(good_copy).count == 30_000
    with pytest.raises(DataError, match="sha256 .* does not match the manifest"):
        verify_dataset(good_copy, full=True)


def test_wrong_dtype(good_copy):
    np.save(good_copy / ZEROS_FILE, np.load(good_copy / ZEROS_FILE).astype(np.float32))
    with pytest.raises(DataError, match="dtype is float32, expected float64"):
        open_dataset(good_copy)


def test_pickled_npy_is_not_loaded(good_copy):
    np.save(good_copy / ZEROS_FILE, np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="not a readable .npy array"):
        open_dataset(good_copy)
