"""trainer.storage on local paths and on gs:// through the real client and gcp-storage-emulator."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from trainer.data.dataset import open_dataset, verify_dataset, write_dataset
from trainer.errors import DataError

from trainer import storage


@pytest.fixture
def gs_root(storage_emulator):
    # The emulator keeps objects for the session; a fresh prefix isolates each test.
    return f"gs://zeta-swarm-test-data/{uuid.uuid4().hex}"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("ZETA_SWARM_CACHE", str(root))
    return root


def test_is_remote_and_join():
    assert storage.is_remote("gs://b/x") and not storage.is_remote("/tmp/x")
    assert storage.join("gs://b/x", "y", "z.npy") == "gs://b/x/y/z.npy"
    assert storage.join("/tmp/x", "y") == "/tmp/x/y"


@pytest.mark.parametrize("kind", ["local", "gs"])
def test_round_trip(kind, tmp_path, request):
    root = str(tmp_path / "root") if kind == "local" else request.getfixturevalue("gs_root")
    uri = storage.join(root, "sub", "a.txt")
    assert not storage.exists(uri)
    storage.write_text_atomic(uri, "hello\n")
    assert storage.exists(uri)
    assert storage.exists(storage.join(root, "sub"))  # a "directory" is a prefix on gs://
    assert storage.read_text(uri) == "hello\n"
    storage.write_bytes_atomic(uri, b"\x00\x01")
    assert storage.read_bytes(uri) == b"\x00\x01"
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload" * 1000)
    storage.upload_file(src, storage.join(root, "b.bin"))
    storage.download_file(storage.join(root, "b.bin"), tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
    storage.remove_tree(root)
    assert not storage.exists(uri)
    assert not storage.exists(root)


@pytest.mark.parametrize("kind", ["local", "gs"])
def test_missing_object_names_it(kind, tmp_path, request):
    root = str(tmp_path) if kind == "local" else request.getfixturevalue("gs_root")
    uri = storage.join(root, "missing.json")
    with pytest.raises(DataError, match=f"^{uri}: no such"):
        storage.read_bytes(uri)
    with pytest.raises(DataError, match=f"^{uri}: no such"):
        storage.download_file(uri, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_local_atomic_write_leaves_no_temp(tmp_path):
    target = tmp_path / "f.txt"
    storage.write_text_atomic(target, "a")
    storage.write_text_atomic(target, "b")
    assert target.read_text() == "b"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_dataset_round_trip_through_gcs(gs_root, cache, odlyzko_small):
    zeros = np.load(odlyzko_small / "zeros.npy")[:3000]
    uri = storage.join(gs_root, "ds")
    write_dataset(uri, zeros, source="odlyzko", first_index=1, abs_accuracy=4e-9)
    assert storage.exists(storage.join(uri, "manifest.json"))
    ds = open_dataset(uri)
    assert ds.path == uri and ds.count == 3000
    assert np.array_equal(ds.ordinates(1, 3001), zeros)
    cached = list(cache.rglob("zeros.npy"))
    assert len(cached) == 1  # fetched once into the cache ...
    open_dataset(uri)
    assert list(cache.rglob("zeros.npy")) == cached  # ... and reused
    assert verify_dataset(uri, full=True)["sha256_ok"] is True
    with pytest.raises(DataError, match="already exists and holds something else"):
        write_dataset(uri, zeros[:10], source="odlyzko", first_index=1, abs_accuracy=4e-9)


def test_remote_dataset_with_wrong_hash_is_not_cached(gs_root, cache, odlyzko_small):
    zeros = np.load(odlyzko_small / "zeros.npy")[:500]
    uri = storage.join(gs_root, "ds")
    write_dataset(uri, zeros, source="odlyzko", first_index=1, abs_accuracy=4e-9)
    tampered = zeros.copy()
    tampered[100] += 1e-6
    local = cache.parent / "t.npy"
    np.save(local, tampered)
    storage.upload_file(local, storage.join(uri, "zeros.npy"))
    with pytest.raises(DataError, match=r"zeros\.npy: sha256 .* does not match"):
        open_dataset(uri)
    assert list(cache.rglob("*.npy")) == []


def test_missing_remote_dataset(gs_root, cache):
    with pytest.raises(DataError, match=rf"^{gs_root}/nothing/manifest\.json: no such object or bucket"):
        open_dataset(f"{gs_root}/nothing")


def test_missing_bucket_is_a_data_error(storage_emulator, tmp_path, cache):
    url = f"gs://no-such-bucket-{uuid.uuid4().hex[:8]}/ds"
    assert not storage.exists(url)
    with pytest.raises(DataError, match=rf"^{url}/zeros\.npy: no such object or bucket"):
        write_dataset(
            url, np.array([14.134725142, 21.022039639]), source="t", first_index=1, abs_accuracy=1e-9
        )
    with pytest.raises(DataError, match=rf"^{url}/manifest\.json: no such object or bucket"):
        open_dataset(url)
