"""The zeros dataset: a directory (local or gs://) with zeros.npy and manifest.json.

zeros.npy holds float64 ordinates gamma_n, n = first_index .. first_index + count - 1, strictly
increasing, memory-mapped on read. manifest.json holds `source`, `first_index`, `count`,
`sha256` (of the array's bytes, little-endian float64), `abs_accuracy`, `created` and `params`.

Every reader validates what it opens: the manifest's keys and types, the array's dtype, shape
and count, finiteness and strict increase (a chunked scan with bounded memory), and agreement
with the smooth counting function at checkpoints. The last check catches a missing or extra
zero, or a wrong first_index: the mean of delta_n = N̄(gamma_n) - (n - 1/2) over 64
consecutive zeros never exceeds 0.04 in the Odlyzko table (delta itself stays within 1.34),
whereas one zero too many or too few shifts it by 1. A bad dataset is a DataError naming the
file, never a silently shorter array.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import mmap
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainer import storage
from trainer.errors import DataError
from trainer.unfolding import unfold

ZEROS_FILE = "zeros.npy"
MANIFEST_FILE = "manifest.json"

_REQUIRED = {"source": str, "first_index": int, "count": int, "sha256": str, "abs_accuracy": (int, float)}
_CHUNK = 1 << 20  # zeros per step of a full scan (8 MiB)
_WINDOW = 64  # zeros per counting-function checkpoint window
_CHECKPOINTS = 512  # checkpoint windows per open; a full verify checks every window
_MAX_ABS_DELTA = 3.0


def _mean_delta_bound(window: int) -> float:
    # Measured on the whole Odlyzko table: max |mean delta| = 1.33, 1.00, 0.63, 0.33, 0.065,
    # 0.040 for windows of 1, 2, 4, 8, 32, 64 zeros; this bound keeps a margin of >= 0.3.
    return 0.3 + 2.5 / window


@dataclass(frozen=True)
class ZerosDataset:
    """An opened, validated dataset.

    Attributes:
        path: where it was opened from (local path or gs:// URL).
        zeros: read-only float64 memmap of all ordinates, gamma_{first_index} first.
        manifest: the parsed manifest.json.
    """

    path: str
    zeros: np.ndarray = field(repr=False)
    manifest: dict = field(repr=False)

    @property
    def first_index(self) -> int:
        """1-based index n of zeros[0]."""
        return int(self.manifest["first_index"])

    @property
    def count(self) -> int:
        """Number of zeros."""
        return int(self.manifest["count"])

    @property
    def last_index(self) -> int:
        """1-based index of the last zero."""
        return self.first_index + self.count - 1

    def ordinates(self, start: int, stop: int) -> np.ndarray:
        """gamma_n for start <= n < stop (1-based indices), a float64 copy.

        The mapped pages just read are released: the copy is all that is kept, so an epoch over
        1e7 zeros does not count the whole file in this process's resident set.

        Raises:
            DataError: if [start, stop) is empty or not inside the dataset.
        """
        if not (self.first_index <= start < stop <= self.last_index + 1):
            raise DataError(
                f"{self.path}: zeros {start}..{stop - 1} are outside the dataset's {self.first_index}..{self.last_index}"
            )
        out = np.array(self.zeros[start - self.first_index : stop - self.first_index], dtype=np.float64)
        self._release_pages()
        return out

    def take(self, indices) -> np.ndarray:
        """gamma_n at the given 1-based indices (any order), a float64 copy.

        Raises:
            DataError: if an index is outside the dataset.
        """
        n = np.asarray(indices, dtype=np.int64)
        if n.size and (n.min() < self.first_index or n.max() > self.last_index):
            raise DataError(
                f"{self.path}: zeros {n.min()}..{n.max()} are outside the dataset's {self.first_index}..{self.last_index}"
            )
        out = np.array(self.zeros[n - self.first_index], dtype=np.float64)
        self._release_pages()
        return out

    def _release_pages(self) -> None:
        mapping = getattr(self.zeros, "_mmap", None)  # numpy.memmap's mmap object
        if mapping is not None:
            mapping.madvise(mmap.MADV_DONTNEED)


def _parse_manifest(text: str, where: str) -> dict:
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: not valid JSON (line {e.lineno}: {e.msg})") from e
    if not isinstance(manifest, dict):
        raise DataError(f"{where}: expected a JSON object")
    for key, kind in _REQUIRED.items():
        if key not in manifest:
            raise DataError(f"{where}: missing key '{key}'")
        value = manifest[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise DataError(f"{where}: key '{key}' has the wrong type ({type(value).__name__})")
    if manifest["first_index"] < 1:
        raise DataError(f"{where}: key 'first_index' must be >= 1, got {manifest['first_index']}")
    if manifest["count"] < 1:
        raise DataError(f"{where}: key 'count' must be >= 1, got {manifest['count']}")
    return manifest


def array_sha256(zeros: np.ndarray) -> str:
    """sha256 hex digest of the array's little-endian float64 bytes, read in chunks."""
    digest = hashlib.sha256()
    for lo in range(0, zeros.size, _CHUNK):
        digest.update(np.ascontiguousarray(zeros[lo : lo + _CHUNK], dtype="<f8").tobytes())
    return digest.hexdigest()


def _scan(zeros: np.ndarray, first_index: int, where: str) -> None:
    """Finite and strictly increasing everywhere, with bounded memory."""
    previous = -math.inf
    for lo in range(0, zeros.size, _CHUNK):
        chunk = np.asarray(zeros[lo : lo + _CHUNK])
        bad = np.flatnonzero(~np.isfinite(chunk))
        if bad.size:
            n = first_index + lo + int(bad[0])
            raise DataError(f"{where}: zero n={n} is {chunk[bad[0]]}, not a finite number")
        steps = np.diff(np.concatenate(([previous], chunk)))
        bad = np.flatnonzero(steps <= 0)
        if bad.size:
            i = lo + int(bad[0])
            n = first_index + i
            raise DataError(
                f"{where}: zeros are not strictly increasing at n={n} "
                f"(gamma_{n - 1} = {float(zeros[i - 1])!r} >= gamma_{n} = {float(zeros[i])!r})"
            )
        previous = float(chunk[-1])


def _check_counting(zeros: np.ndarray, first_index: int, where: str, *, every_window: bool) -> float:
    """Agreement with N̄ at checkpoint windows (or every window); returns max |delta| seen."""
    count = zeros.size
    window = min(_WINDOW, count)
    if every_window:
        starts = np.arange(0, count - window + 1, window)
        if starts[-1] != count - window:
            starts = np.append(starts, count - window)
    else:
        starts = np.unique(
            np.linspace(0, count - window, min(_CHECKPOINTS, count - window + 1)).astype(np.int64)
        )
    bound = _mean_delta_bound(window)
    worst = 0.0
    for lo in range(0, starts.size, 4096):
        block = starts[lo : lo + 4096]
        idx = (block[:, None] + np.arange(window)[None, :]).ravel()
        delta = (unfold(np.asarray(zeros[idx])) - (first_index + idx - 0.5)).reshape(block.size, window)
        worst = max(worst, float(np.abs(delta).max()))
        means = delta.mean(axis=1)
        bad = np.flatnonzero((np.abs(means) > bound) | (np.abs(delta).max(axis=1) >= _MAX_ABS_DELTA))
        if bad.size:
            s = int(block[bad[0]])
            n0, n1 = first_index + s, first_index + s + window - 1
            raise DataError(
                f"{where}: zeros n={n0}..{n1} disagree with the smooth counting function "
                f"(mean N̄(gamma_n) - (n - 1/2) = {means[bad[0]]:+.3f}, allowed +-{bound:.2f}): "
                "a zero is missing or extra before them, or first_index is wrong"
            )
    return worst


def validate_zeros(zeros: np.ndarray, first_index: int, where: str, *, every_window: bool = True) -> float:
    """Check ordinates before they are written or after they are read.

    Args:
        zeros: 1-D float64 array (or memmap) of ordinates.
        first_index: 1-based index of zeros[0].
        where: file or source name for error messages.
        every_window: check the counting function on every 64-zero window (True, default) or
            only on 512 spread checkpoints (False, for a fast open).

    Returns:
        The largest |delta_n| seen.

    Raises:
        DataError: on an empty array, a non-finite value, a non-increasing step, or
            disagreement with the smooth counting function.
    """
    if zeros.ndim != 1 or zeros.size == 0:
        raise DataError(f"{where}: no zeros (expected a non-empty 1-D array, got shape {zeros.shape})")
    _scan(zeros, first_index, where)
    return _check_counting(zeros, first_index, where, every_window=every_window)


def _load_array(npy_path: Path, where: str) -> np.ndarray:
    try:
        zeros = np.load(npy_path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{where}: not a readable .npy array ({e})") from e
    if zeros.dtype != np.float64:
        raise DataError(f"{where}: dtype is {zeros.dtype}, expected float64")
    return zeros


def _sha_check(expected: str, where: str):
    def check(path: Path) -> None:
        actual = array_sha256(_load_array(path, where))
        if actual != expected:
            raise DataError(
                f"{where}: sha256 {actual[:16]}... does not match the manifest's {expected[:16]}..."
            )

    return check


def open_dataset(path: str | os.PathLike) -> ZerosDataset:
    """Open and validate a dataset directory (local path or gs:// URL).

    A remote zeros.npy is fetched once into the local cache (storage.local_copy) and its
    sha256 checked against the manifest before it is cached. The array is memory-mapped.

    Args:
        path: dataset directory.

    Raises:
        DataError: if anything is missing, malformed or inconsistent (see validate_zeros).
    """
    path = str(path)
    manifest_uri = storage.join(path, MANIFEST_FILE)
    zeros_uri = storage.join(path, ZEROS_FILE)
    if not storage.is_remote(path) and not os.path.isdir(path):
        raise DataError(f"{path}: no such dataset directory")
    manifest = _parse_manifest(storage.read_text(manifest_uri), manifest_uri)
    local = storage.local_copy(
        zeros_uri, version=manifest["sha256"], check=_sha_check(manifest["sha256"], zeros_uri)
    )
    zeros = _load_array(local, zeros_uri)
    if zeros.ndim != 1 or zeros.size != manifest["count"]:
        raise DataError(
            f"{zeros_uri}: holds {zeros.size} zeros (shape {zeros.shape}), the manifest says {manifest['count']}"
        )
    validate_zeros(zeros, manifest["first_index"], zeros_uri, every_window=False)
    return ZerosDataset(path=path, zeros=zeros, manifest=manifest)


def verify_dataset(path: str | os.PathLike, *, full: bool = True) -> dict:
    """Validate a dataset; with full=True also its sha256 and every counting-function window.

    Args:
        path: dataset directory (local or gs://).
        full: check sha256 and all windows (default True) or only what open_dataset checks.

    Returns:
        A summary: path, source, first_index, last_index, count, gamma_first, gamma_last,
        max_abs_delta, sha256_ok (None when not checked).

    Raises:
        DataError: as open_dataset, plus sha256 mismatch.
    """
    ds = open_dataset(path)
    where = storage.join(ds.path, ZEROS_FILE)
    sha_ok = None
    if full:
        _sha_check(ds.manifest["sha256"], where)(Path(ds.zeros.filename))
        sha_ok = True
    worst = _check_counting(ds.zeros, ds.first_index, where, every_window=full)
    return {
        "path": ds.path,
        "source": ds.manifest["source"],
        "first_index": ds.first_index,
        "last_index": ds.last_index,
        "count": ds.count,
        "gamma_first": float(ds.zeros[0]),
        "gamma_last": float(ds.zeros[-1]),
        "max_abs_delta": worst,
        "sha256_ok": sha_ok,
    }


def write_dataset(
    out_dir: str | os.PathLike,
    zeros: np.ndarray,
    *,
    source: str,
    first_index: int,
    abs_accuracy: float,
    params: dict | None = None,
) -> dict:
    """Validate zeros and write them as a dataset, atomically.

    Local: everything is written into a temporary directory beside out_dir, which is then
    renamed to out_dir. gs://: zeros.npy is uploaded first and manifest.json last, so the
    manifest (which every reader needs) appears only once the array is complete.
    Writing the same content again is a no-op; a different dataset already at out_dir is
    refused.

    Args:
        out_dir: dataset directory to create (local or gs://).
        zeros: 1-D array of ordinates, strictly increasing.
        source: where the zeros came from (e.g. "odlyzko", "generate", "import:<file>").
        first_index: 1-based index of zeros[0].
        abs_accuracy: absolute accuracy of the ordinates, in t units.
        params: generator or import parameters recorded in the manifest.

    Returns:
        The manifest written.

    Raises:
        DataError: if the zeros are invalid or out_dir holds something else.
    """
    out = str(out_dir)
    zeros = np.ascontiguousarray(zeros, dtype=np.float64)
    validate_zeros(zeros, first_index, source)
    sha = array_sha256(zeros)
    if storage.exists(out):
        manifest_uri = storage.join(out, MANIFEST_FILE)
        if storage.exists(manifest_uri):
            old = _parse_manifest(storage.read_text(manifest_uri), manifest_uri)
            if old["sha256"] == sha and old["first_index"] == first_index:
                return old
        raise DataError(f"{out}: already exists and holds something else; choose another --out or remove it")
    manifest = {
        "source": source,
        "first_index": int(first_index),
        "count": int(zeros.size),
        "sha256": sha,
        "abs_accuracy": float(abs_accuracy),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "params": params or {},
    }
    manifest_text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    if storage.is_remote(out):
        with tempfile.TemporaryDirectory() as tmp:
            npy = Path(tmp) / ZEROS_FILE
            np.save(npy, zeros.astype("<f8"), allow_pickle=False)
            storage.upload_file(npy, storage.join(out, ZEROS_FILE))
        storage.write_text_atomic(storage.join(out, MANIFEST_FILE), manifest_text)
        return manifest
    final = Path(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        np.save(tmp / ZEROS_FILE, zeros.astype("<f8"), allow_pickle=False)
        (tmp / MANIFEST_FILE).write_text(manifest_text)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
