"""Sharded datasets: one reader over one index space, exact boundaries, and every way shards can be bad."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from click.testing import CliRunner
from trainer.cli import main as trainer_main
from trainer.data.dataset import (
    MANIFEST_FILE,
    merge_shards,
    open_dataset,
    verify_dataset,
    write_shard,
)
from trainer.data.odlyzko import TABLE_ACCURACY, load_table
from trainer.errors import DataError

from trainer import storage

# Three shards of the first 12,000 zeros, cut at 5,000 and 9,000.
CUTS = [(1, 5000), (5001, 4000), (9001, 3000)]


@pytest.fixture(scope="module")
def table():
    return load_table(12_000)


def _write_shards(out, table, cuts=CUTS, *, tamper=None):
    for k, (first, count) in enumerate(cuts):
        zeros = table[first - 1 : first - 1 + count].copy()
        if tamper is not None:
            zeros = tamper(k, zeros)
        write_shard(out, k, zeros, source="odlyzko", first_index=first, abs_accuracy=TABLE_ACCURACY)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, table):
    out = tmp_path_factory.mktemp("sharded") / "d"
    _write_shards(str(out), table)
    merge_shards(str(out), expect=CUTS)
    return out


def test_one_index_space_over_shards(sharded, table, odlyzko_small):
    ds = open_dataset(sharded)
    single = open_dataset(odlyzko_small)
    assert (ds.first_index, ds.last_index, ds.count, len(ds.shards)) == (1, 12_000, 12_000, 3)
    across = ds.ordinates(4990, 9010)  # spans all three shards
    assert across.dtype == np.float64 and np.array_equal(across, table[4989:9009])
    assert np.array_equal(across, single.ordinates(4990, 9010))
    picks = [12_000, 1, 5000, 5001, 9000, 9001, 5001]
    assert np.array_equal(ds.take(picks), table[np.array(picks) - 1])
    assert np.array_equal(ds.take(picks), single.take(picks))
    with pytest.raises(DataError, match=r"zero 12001 is outside the dataset's 1..12000"):
        ds.take([5, 12_001])


def test_merged_manifest_records_certified_boundaries(sharded):
    manifest = json.loads((sharded / MANIFEST_FILE).read_text())
    assert [(s["path"], s["first_index"], s["count"]) for s in manifest["shards"]] == [
        ("shards/00000.npy", 1, 5000),
        ("shards/00001.npy", 5001, 4000),
        ("shards/00002.npy", 9001, 3000),
    ]
    assert manifest["boundaries_certified"] is True
    b = manifest["boundaries"]
    assert [x["index"] for x in b] == [5001, 9001]
    # Turing's method proves N(g_m) = m + 1 at anchors on both sides of each joint.
    assert all(x["gram_anchors"][0] <= x["index"] - 2 and x["gram_anchors"][1] >= x["index"] - 1 for x in b)
    assert all(x["max_abs_diff"] < 1e-8 for x in b)


def test_verify_cli_checks_every_shard_and_boundary(sharded):
    result = CliRunner().invoke(trainer_main, ["zeros", "verify", str(sharded)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split(" (")[0] for line in lines[:2]] == ["ok boundary n = 5001", "ok boundary n = 9001"]
    assert "12000 zeros, n = 1..12000, 3 shards, sha256 ok" in lines[2]


def _fails(args, message):
    result = CliRunner().invoke(trainer_main, ["zeros", *args])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert message in result.output, result.output


def test_a_wrong_zero_at_a_joint_fails_the_certificate_and_writes_no_manifest(tmp_path, table):
    # Shard 0's last value nudged by 1e-6: still increasing, its own checksum recorded, and the
    # counting windows cannot tell; only the count certificate at the joint can.
    def nudge(k, zeros):
        if k == 0:
            zeros[-1] += 1e-6
        return zeros

    out = tmp_path / "d"
    _write_shards(str(out), table, tamper=nudge)
    _fails(["merge", str(out)], "shards/00001.npy: the count certificate at n=5001 fails")
    assert not (out / MANIFEST_FILE).exists()


@pytest.mark.parametrize(
    ("cuts", "message"),
    [
        (
            [(1, 5000), (4990, 4011), (9001, 3000)],
            "shards/00001.npy starts at n=4990 but n=5001 comes next: it overlaps",
        ),
        (
            [(1, 5000), (5011, 3990), (9001, 3000)],
            "shards/00001.npy starts at n=5011 but n=5001 comes next: it leaves a gap",
        ),
    ],
)
def test_overlapping_or_gapped_shards_are_refused(tmp_path, table, cuts, message):
    out = tmp_path / "d"
    _write_shards(str(out), table, cuts)
    _fails(["merge", str(out)], message)
    assert not (out / MANIFEST_FILE).exists()


def test_missing_or_unplanned_shard(tmp_path, table):
    out = tmp_path / "d"
    _write_shards(str(out), table, CUTS[:2])
    _fails(["merge", str(out), "--expect", json.dumps(CUTS)], "shards/00002.npy: missing shard")
    _fails(
        ["merge", str(out), "--expect", json.dumps(CUTS[:1])], "shards/00001.npy: a shard outside the plan"
    )
    assert not (out / MANIFEST_FILE).exists()


def test_checksum_and_count_mismatch_and_missing_file(tmp_path, table):
    out = tmp_path / "d"
    _write_shards(str(out), table)
    merge_shards(str(out))
    verify_dataset(out)
    npy = out / "shards" / "00001.npy"
    good = np.load(npy)
    bad = good.copy()
    bad[1234] += 1e-7  # increasing and consistent: only the checksum can tell
    np.save(npy, bad)
    assert open_dataset(out).count == 12_000  # opening reads no whole shard
    _fails(["verify", str(out)], "shards/00001.npy: sha256")
    np.save(npy, good[:-1])
    _fails(["info", str(out)], "shards/00001.npy: holds 3999 zeros (shape (3999,)), the manifest says 4000")
    npy.unlink()
    _fails(["info", str(out)], "shards/00001.npy: no such file")


def test_shard_with_other_values_is_refused_and_nothing_half_written(tmp_path, table):
    out = tmp_path / "d"
    write_shard(str(out), 0, table[:5000], source="t", first_index=1, abs_accuracy=TABLE_ACCURACY)
    again = write_shard(str(out), 0, table[:5000], source="t", first_index=1, abs_accuracy=TABLE_ACCURACY)
    assert again["count"] == 5000  # the same shard again: a no-op
    with pytest.raises(DataError, match="shard 0 already holds zeros n=1..5000 with other values"):
        write_shard(str(out), 0, table[1:5001], source="t", first_index=2, abs_accuracy=TABLE_ACCURACY)
    bad = table[5000:6000].copy()
    bad[10] = np.nan
    with pytest.raises(DataError, match="zero n=5011 is nan"):
        write_shard(str(out), 1, bad, source="t", first_index=5001, abs_accuracy=TABLE_ACCURACY)
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["00000.json", "00000.npy"]


def test_shards_never_go_into_a_single_file_dataset(tmp_path, odlyzko_small, table):
    import shutil

    single = tmp_path / "single"
    shutil.copytree(odlyzko_small, single)
    with pytest.raises(DataError, match="holds a single-file dataset; write shards into another directory"):
        write_shard(str(single), 0, table[:100], source="t", first_index=1, abs_accuracy=TABLE_ACCURACY)
    _fails(["merge", str(single)], "holds a single-file dataset")
    assert open_dataset(single).count == 30_000 and not (single / "shards").exists()


def test_generate_shard_refuses_too_little_disk_before_working(tmp_path, monkeypatch):
    import collections
    import shutil

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))  # 1 MB free
    _fails(
        ["generate", "--start", "1", "--count", str(10**6), "--out", str(tmp_path / "d"), "--shard", "0"],
        "needs",
    )
    assert not (tmp_path / "d").exists()


def test_gs_shards_are_fetched_on_demand_into_a_bounded_cache(storage_emulator, tmp_path, monkeypatch, table):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ZETA_SWARM_CACHE", str(cache))
    out = f"gs://zeta-swarm-test-data/{uuid.uuid4().hex}/d"
    _write_shards(out, table)
    merge_shards(out, expect=CUTS)
    for path in cache.glob("*/*"):
        path.unlink()  # merge read every shard; start cold
    monkeypatch.setenv("ZETA_SWARM_CACHE_BYTES", str(5000 * 8 + 200))  # about one shard
    ds = open_dataset(out)
    assert not list(cache.glob("*/*.npy"))  # opening fetched nothing
    assert np.array_equal(ds.ordinates(100, 110), table[99:109])
    assert [p.name for p in cache.glob("*/*.npy")] == ["00000.npy"]
    assert np.array_equal(ds.take([9500, 5500]), table[[9499, 5499]])  # two more shards, LRU out
    cached = sorted(p.name for p in cache.glob("*/*.npy"))
    assert (
        "00000.npy" not in cached and sum(p.stat().st_size for p in cache.glob("*/*.npy")) <= 5000 * 8 + 200
    )
    assert np.array_equal(ds.ordinates(1, 12_001), table)  # still readable: evicted shards come back
    assert verify_dataset(out)["boundaries"][1]["index"] == 9001
    assert storage.list_names(storage.join(out, "shards"))[:2] == ["00000.json", "00000.npy"]


@pytest.mark.parametrize(
    "args,ok",
    [
        (["check-space", "{d}", "--count", "100"], True),  # 1.0 MB needed, 1.0 MB free
        (["check-space", "{d}", "--count", "1000"], False),
        (["odlyzko", "--count", "1000", "--out", "{d}"], False),
        (["check-space", "{d}/not/yet/made", "--count", "1000"], False),
    ],
)
def test_one_free_space_rule_for_every_writer(tmp_path, monkeypatch, args, ok):
    """`check-space` is the rule `orchestrator zeros` asks before a fan-out; the writers apply the same."""
    import collections
    import shutil

    from trainer.data.dataset import dataset_bytes

    usage = collections.namedtuple("usage", "total used free")
    free = dataset_bytes(100)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - free, free))
    argv = [a.replace("{d}", str(tmp_path / "d")) for a in args]
    if ok:
        assert CliRunner().invoke(trainer_main, ["zeros", *argv]).exit_code == 0
    else:
        _fails(argv, "--count: needs 1 MB at ")
    assert not (tmp_path / "d").exists()
