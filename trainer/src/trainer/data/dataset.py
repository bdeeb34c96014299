"""The zeros dataset: a directory (local or gs://) with manifest.json and the ordinates.

Two layouts share one index space and one reader (ZerosDataset):

* single file: zeros.npy holds float64 ordinates gamma_n, n = first_index .. first_index + count - 1;
* sharded: shards/NNNNN.npy, each a contiguous run of the same index space, listed in order in
  the manifest's `shards` as {path, first_index, count, sha256, abs_accuracy} (path relative to
  the dataset directory). Shard k+1 starts at the zero right after shard k's last; the manifest's
  `boundaries` record the count certificate at each joint (see `certify_boundary`).

manifest.json holds `source`, `first_index`, `count`, `sha256`, `abs_accuracy`, `created` and
`params`. `sha256` is the array's (little-endian float64 bytes) for a single file, and for a
sharded dataset the sha256 of the shard list (one line "first_index count sha256" per shard),
so the dataset's identity needs no pass over its bytes.

Opening never reads the whole array: it checks the manifest (keys, types, contiguous shards,
counts), every local shard's .npy header, and agreement with the smooth counting function on
512 checkpoint windows spread over the dataset (finite, strictly increasing, mean of
delta_n = N̄(gamma_n) - (n - 1/2) over 64 zeros within bounds). That catches a missing or extra
zero, or a wrong first_index: the mean never exceeds 0.04 in the Odlyzko table (delta itself
stays within 1.34), whereas one zero too many or too few shifts it by 1. A gs:// shard is fetched
on first use into the byte-bounded local cache (storage.local_copy), its sha256 checked before
it is cached, and then checked the same way. `verify_dataset` is the full check: every shard's
sha256, every value, every window, and the certificate at every shard boundary. A bad dataset
is a DataError naming the file, never a silently shorter array.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
import math
import mmap
import os
import posixpath
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer import storage
from trainer.errors import DataError
from trainer.unfolding import unfold

ZEROS_FILE = "zeros.npy"
MANIFEST_FILE = "manifest.json"
SHARDS_DIR = "shards"

_REQUIRED = {"source": str, "first_index": int, "count": int, "sha256": str, "abs_accuracy": (int, float)}
_SHARD_REQUIRED = {"path": str, "first_index": int, "count": int, "sha256": str, "abs_accuracy": (int, float)}
_CHUNK = 1 << 20  # zeros per step of a full scan (8 MiB)
_WINDOW = 64  # zeros per counting-function checkpoint window
_CHECKPOINTS = 512  # checkpoint windows per open; a full verify checks every window
_MAX_ABS_DELTA = 3.0
_OPEN_MAPS = 64  # shard memmaps kept open per dataset (least recently used closed first)
MAX_INDEX = 2**63 - 1  # zero indices are int64 in the reader (float64 cannot tell zeros apart long before)


def _mean_delta_bound(window: int) -> float:
    # Measured on the whole Odlyzko table: max |mean delta| = 1.33, 1.00, 0.63, 0.33, 0.065,
    # 0.040 for windows of 1, 2, 4, 8, 32, 64 zeros; this bound keeps a margin of >= 0.3.
    return 0.3 + 2.5 / window


def shard_name(k: int) -> str:
    """Path of shard k relative to the dataset directory: shards/NNNNN.npy."""
    return f"{SHARDS_DIR}/{k:05d}.npy"


def shard_list_sha256(shards: list[dict]) -> str:
    """The sharded dataset's `sha256`: sha256 of one line "first_index count sha256" per shard."""
    text = "".join(f"{s['first_index']} {s['count']} {s['sha256']}\n" for s in shards)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Shard:
    """One contiguous run of the index space, stored in one .npy file."""

    path: str  # relative to the dataset directory
    first_index: int
    count: int
    sha256: str
    abs_accuracy: float

    @property
    def last_index(self) -> int:
        return self.first_index + self.count - 1


class ZerosDataset:
    """An opened, validated dataset: one 1-based index space over one file or many shards.

    The reader API: `first_index`, `last_index`, `count`, `path`, `ordinates(start, stop)` and
    `take(indices)`. Both return float64 copies and drop the mapped pages they touched, so a
    pass over 1e8 zeros keeps only what the caller keeps resident.

    Attributes:
        path: where it was opened from (local path or gs:// URL).
        manifest: the parsed manifest.json.
        shards: the index runs, in order (one, zeros.npy, for a single-file dataset).
    """

    def __init__(self, path: str, manifest: dict, shards: list[Shard]):
        self.path = path
        self.manifest = manifest
        self.shards = shards
        self._starts = np.array([s.first_index for s in shards], dtype=np.int64)
        self._maps: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._checked: set[int] = set()

    def __repr__(self) -> str:
        return f"ZerosDataset({self.path!r}, n = {self.first_index}..{self.last_index}, {len(self.shards)} shard(s))"

    @property
    def first_index(self) -> int:
        """1-based index n of the first zero."""
        return int(self.manifest["first_index"])

    @property
    def count(self) -> int:
        """Number of zeros."""
        return int(self.manifest["count"])

    @property
    def last_index(self) -> int:
        """1-based index of the last zero."""
        return self.first_index + self.count - 1

    @property
    def sharded(self) -> bool:
        return "shards" in self.manifest

    def where(self, k: int) -> str:
        """URI of shard k."""
        return storage.join(self.path, self.shards[k].path)

    def shard_array(self, k: int) -> np.ndarray:
        """Shard k as a read-only float64 memmap (fetched into the cache first if remote)."""
        if k in self._maps:
            self._maps.move_to_end(k)
            return self._maps[k]
        shard, where = self.shards[k], self.where(k)
        local = storage.local_copy(where, version=shard.sha256, check=_sha_check(shard.sha256, where))
        array = _load_array(local, where)
        _check_shape(array, shard.count, where)
        if k not in self._checked:  # remote shards are first seen here; local ones at open
            _check_counting(array, shard.first_index, where, checkpoints=64)
            self._checked.add(k)
        self._maps[k] = array
        while len(self._maps) > _OPEN_MAPS:
            self._maps.popitem(last=False)
        return array

    def _shard_of(self, n: np.ndarray) -> np.ndarray:
        return np.searchsorted(self._starts, n, side="right") - 1

    def ordinates(self, start: int, stop: int) -> np.ndarray:
        """gamma_n for start <= n < stop (1-based), a float64 copy; mapped pages are released.

        Raises:
            DataError: if [start, stop) is empty or not inside the dataset.
        """
        if not (self.first_index <= start < stop <= self.last_index + 1):
            raise DataError(
                f"{self.path}: zeros {start}..{stop - 1} are outside the dataset's {self.first_index}..{self.last_index}"
            )
        out = np.empty(stop - start, dtype=np.float64)
        k = int(self._shard_of(np.int64(start)))
        n = start
        while n < stop:
            shard = self.shards[k]
            hi = min(stop, shard.last_index + 1)
            array = self.shard_array(k)
            out[n - start : hi - start] = array[n - shard.first_index : hi - shard.first_index]
            _release(array)
            n, k = hi, k + 1
        return out

    def take(self, indices) -> np.ndarray:
        """gamma_n for each 1-based n in `indices` (any order, repeats allowed), a float64 array.

        Raises:
            DataError: if an index is outside the dataset.
        """
        n = np.asarray(indices, dtype=np.int64)
        if n.size and (n.min() < self.first_index or n.max() > self.last_index):
            bad = int(n[(n < self.first_index) | (n > self.last_index)][0])
            raise DataError(
                f"{self.path}: zero {bad} is outside the dataset's {self.first_index}..{self.last_index}"
            )
        out = np.empty(n.shape, dtype=np.float64)
        which = self._shard_of(n)
        for k in np.unique(which):
            mask = which == k
            array = self.shard_array(int(k))
            out[mask] = array[n[mask] - self.shards[int(k)].first_index]
            _release(array)
        return out


def _release(array: np.ndarray) -> None:
    # Drop the mapped pages just copied from: without this an epoch over 1e7 zeros would count
    # the whole 80 MB in this process's resident set.
    mapping = getattr(array, "_mmap", None)
    if mapping is not None:
        mapping.madvise(mmap.MADV_DONTNEED)


def _check_type(entry: dict, key: str, kind, where: str, what: str) -> None:
    if key not in entry:
        raise DataError(f"{where}: {what}missing key '{key}'")
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise DataError(f"{where}: {what}key '{key}' has the wrong type ({type(value).__name__})")


def _json_object(text: str, where: str) -> dict:
    """text parsed as one JSON object, or a DataError naming `where`."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: not valid JSON (line {e.lineno}: {e.msg})") from e
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object")
    return obj


def _parse_manifest(text: str, where: str) -> dict:
    manifest = _json_object(text, where)
    for key, kind in _REQUIRED.items():
        _check_type(manifest, key, kind, where, "")
    if manifest["first_index"] < 1:
        raise DataError(f"{where}: key 'first_index' must be >= 1, got {manifest['first_index']}")
    if manifest["count"] < 1:
        raise DataError(f"{where}: key 'count' must be >= 1, got {manifest['count']}")
    check_index_range(manifest["first_index"], manifest["count"], f"{where}: key 'first_index'")
    return manifest


def check_index_range(first_index: int, count: int, what: str) -> None:
    """Refuse (DataError naming `what`) zeros n = first_index..first_index+count-1 beyond int64."""
    if first_index + count - 1 > MAX_INDEX:
        raise DataError(
            f"{what}: zeros n={first_index}..{first_index + count - 1} go beyond n = 2**63 - 1, "
            "the largest index a dataset can hold"
        )


def parse_shards(entries, first_index: int, count: int, where: str) -> list[Shard]:
    """Shard entries -> Shards, checked: types, safe relative paths, contiguous, counts adding up.

    Raises:
        DataError: naming the shard, on an overlap, a gap, a bad entry or a total off the count.
    """
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{where}: 'shards' must be a non-empty list")
    shards: list[Shard] = []
    expected = first_index
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DataError(f"{where}: shards[{i}] is not an object")
        for key, kind in _SHARD_REQUIRED.items():
            _check_type(entry, key, kind, where, f"shards[{i}]: ")
        path = entry["path"]
        if posixpath.isabs(path) or ".." in path.split("/") or not path.endswith(".npy"):
            raise DataError(f"{where}: shard {path!r}: path must be a relative .npy path inside the dataset")
        shard = Shard(
            path, entry["first_index"], entry["count"], entry["sha256"], float(entry["abs_accuracy"])
        )
        if shard.count < 1:
            raise DataError(f"{where}: shard {path}: count must be >= 1, got {shard.count}")
        if shard.first_index != expected:
            kind = (
                "overlaps the previous shard"
                if shard.first_index < expected
                else "leaves a gap after the previous shard"
            )
            raise DataError(
                f"{where}: shard {path} starts at n={shard.first_index} but n={expected} comes next: it {kind}"
            )
        shards.append(shard)
        expected = shard.last_index + 1
    if expected - first_index != count:
        raise DataError(f"{where}: the shards hold {expected - first_index} zeros, the manifest says {count}")
    return shards


def array_sha256(zeros: np.ndarray) -> str:
    """sha256 hex digest of the array's little-endian float64 bytes, read in chunks."""
    digest = hashlib.sha256()
    for lo in range(0, zeros.size, _CHUNK):
        digest.update(np.ascontiguousarray(zeros[lo : lo + _CHUNK], dtype="<f8").tobytes())
    return digest.hexdigest()


def _scan(chunk: np.ndarray, first_index: int, where: str, previous: float = -math.inf) -> float:
    """Finite and strictly increasing (after `previous`); returns the chunk's last value."""
    bad = np.flatnonzero(~np.isfinite(chunk))
    if bad.size:
        raise DataError(
            f"{where}: zero n={first_index + int(bad[0])} is {chunk[bad[0]]}, not a finite number"
        )
    steps = np.diff(np.concatenate(([previous], chunk)))
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        i = int(bad[0])
        n = first_index + i
        before = previous if i == 0 else float(chunk[i - 1])
        raise DataError(
            f"{where}: zeros are not strictly increasing at n={n} "
            f"(gamma_{n - 1} = {before!r} >= gamma_{n} = {float(chunk[i])!r})"
        )
    return float(chunk[-1])


def _scan_all(zeros: np.ndarray, first_index: int, where: str, previous: float = -math.inf) -> float:
    """_scan over an array in bounded chunks; returns its last value."""
    for lo in range(0, zeros.size, _CHUNK):
        previous = _scan(np.asarray(zeros[lo : lo + _CHUNK]), first_index + lo, where, previous)
        _release(zeros)
    return previous


def _check_counting(
    zeros: np.ndarray, first_index: int, where: str, *, checkpoints: int | None = _CHECKPOINTS
) -> float:
    """Agreement with N̄ at `checkpoints` spread windows (None: every window); returns max |delta|.

    The windows read are also checked to be finite and strictly increasing.
    """
    count = zeros.size
    window = min(_WINDOW, count)
    if checkpoints is None:
        starts = np.arange(0, count - window + 1, window)
        if starts[-1] != count - window:
            starts = np.append(starts, count - window)
    else:
        starts = np.unique(
            np.linspace(0, count - window, max(1, min(checkpoints, count - window + 1))).astype(np.int64)
        )
    bound = _mean_delta_bound(window)
    worst = 0.0
    for lo in range(0, starts.size, 4096):
        block = starts[lo : lo + 4096]
        idx = (block[:, None] + np.arange(window)[None, :]).ravel()
        gamma = np.asarray(zeros[idx])
        if checkpoints is not None:  # a full verify has scanned every value already
            for b in range(block.size):
                _scan(gamma[b * window : (b + 1) * window], first_index + int(block[b]), where)
        delta = (unfold(gamma) - (first_index + idx - 0.5)).reshape(block.size, window)
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
    _release(zeros)
    return worst


def validate_zeros(zeros: np.ndarray, first_index: int, where: str) -> float:
    """Check ordinates before they are written: every value and every counting-function window.

    Args:
        zeros: 1-D float64 array (or memmap) of ordinates.
        first_index: 1-based index of zeros[0].
        where: file or source name for error messages.

    Returns:
        The largest |delta_n| seen.

    Raises:
        DataError: on an empty array, a non-finite value, a non-increasing step, or
            disagreement with the smooth counting function.
    """
    if zeros.ndim != 1 or zeros.size == 0:
        raise DataError(f"{where}: no zeros (expected a non-empty 1-D array, got shape {zeros.shape})")
    check_index_range(first_index, zeros.size, where)
    _scan_all(zeros, first_index, where)
    return _check_counting(zeros, first_index, where, checkpoints=None)


def _load_array(npy_path: Path, where: str) -> np.ndarray:
    try:
        zeros = np.load(npy_path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError as e:
        raise DataError(f"{where}: no such file") from e
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{where}: not a readable .npy array ({e})") from e
    if zeros.dtype != np.float64:
        raise DataError(f"{where}: dtype is {zeros.dtype}, expected float64")
    return zeros


def _check_shape(zeros: np.ndarray, count: int, where: str) -> None:
    if zeros.ndim != 1:
        raise DataError(f"{where}: has shape {zeros.shape}, expected a 1-D array of {count} zeros")
    if zeros.size != count:
        raise DataError(f"{where}: holds {zeros.size} zeros (shape {zeros.shape}), the manifest says {count}")


def _sha_check(expected: str, where: str):
    def check(path: Path) -> None:
        actual = array_sha256(_load_array(path, where))
        if actual != expected:
            raise DataError(
                f"{where}: sha256 {actual[:16]}... does not match the manifest's {expected[:16]}..."
            )

    return check


def dataset_from_manifest(path: str, manifest: dict) -> ZerosDataset:
    """A ZerosDataset over a parsed manifest, checked as open_dataset checks (nothing read yet
    for remote shards)."""
    where = storage.join(path, MANIFEST_FILE)
    if "shards" in manifest:
        shards = parse_shards(manifest["shards"], manifest["first_index"], manifest["count"], where)
        if manifest["sha256"] != shard_list_sha256(manifest["shards"]):
            raise DataError(f"{where}: 'sha256' is not the sha256 of the shard list")
    else:
        shards = [
            Shard(
                ZEROS_FILE,
                manifest["first_index"],
                manifest["count"],
                manifest["sha256"],
                manifest["abs_accuracy"],
            )
        ]
    ds = ZerosDataset(path, manifest, shards)
    if storage.is_remote(path) and "shards" in manifest:
        return ds  # each shard is fetched and checked on first use
    budget = max(len(shards), _CHECKPOINTS)
    for k, shard in enumerate(shards):
        array = ds.shard_array(k) if storage.is_remote(path) else _load_array(Path(ds.where(k)), ds.where(k))
        _check_shape(array, shard.count, ds.where(k))
        _check_counting(
            array, shard.first_index, ds.where(k), checkpoints=max(1, budget * shard.count // ds.count)
        )
        ds._checked.add(k)
    return ds


def open_dataset(path: str | os.PathLike) -> ZerosDataset:
    """Open and validate a dataset directory (local path or gs:// URL), without reading it whole.

    Args:
        path: dataset directory.

    Raises:
        DataError: if anything is missing, malformed or inconsistent.
    """
    path = str(path)
    if not storage.is_remote(path) and not os.path.isdir(path):
        raise DataError(f"{path}: no such dataset directory")
    manifest_uri = storage.join(path, MANIFEST_FILE)
    manifest = _parse_manifest(storage.read_text(manifest_uri), manifest_uri)
    return dataset_from_manifest(path, manifest)


def _boundary_windows(ds: ZerosDataset) -> float:
    """The counting-function window straddling each shard boundary; returns max |delta|."""
    worst = 0.0
    for shard in ds.shards[1:]:
        lo = max(ds.first_index, shard.first_index - _WINDOW // 2)
        hi = min(ds.last_index + 1, lo + _WINDOW)
        worst = max(
            worst, _check_counting(ds.ordinates(lo, hi), lo, f"{ds.path} at {shard.path}", checkpoints=1)
        )
    return worst


def certify_boundary(ds: ZerosDataset, k: int) -> dict:
    """The count certificate at the joint between shard k-1 and shard k (k >= 1).

    gamma_{b-1} and gamma_b (b = shard k's first index) are computed afresh by the generator,
    whose Turing's-method anchors prove N(g_m) at Gram points on both sides, so their indices
    are exact; they must match shard k-1's last and shard k's first stored values within the
    two shards' abs_accuracy. Then no zero is lost or counted twice across the joint.

    Raises:
        DataError: naming the shard when the stored values are not gamma_{b-1}, gamma_b.
    """
    from trainer.data.generate import generate_zeros

    shard, before = ds.shards[k], ds.shards[k - 1]
    b = shard.first_index
    fresh, stats = generate_zeros(b - 1, 2, chunk=2)
    stored = ds.ordinates(b - 1, b + 1)
    diff = float(np.abs(fresh - stored).max())
    tol = shard.abs_accuracy + before.abs_accuracy + 2e-9
    if diff > tol:
        raise DataError(
            f"{ds.where(k)}: the count certificate at n={b} fails: stored gamma_{b - 1}, gamma_{b} = "
            f"{stored[0]!r}, {stored[1]!r} but Turing's method gives {fresh[0]!r}, {fresh[1]!r} "
            f"(|diff| {diff:.2e} > {tol:.1e}): a zero is missing or repeated at this shard boundary"
        )
    m_a, m_b = stats.anchors[0]
    return {
        "index": b,
        "shard": shard.path,
        "gamma_before": float(stored[0]),
        "gamma_after": float(stored[1]),
        "max_abs_diff": diff,
        "method": "Turing",
        "gram_anchors": [m_a, m_b],
        "turing_k": stats.turing_k[0],
    }


def verify_dataset(path: str | os.PathLike, *, full: bool = True) -> dict:
    """Validate a dataset; with full=True every shard's sha256, every value and window, and the
    count certificate at every shard boundary.

    Args:
        path: dataset directory (local or gs://).
        full: the full check (default True) or only what open_dataset checks.

    Returns:
        A summary: path, source, first_index, last_index, count, shards, gamma_first,
        gamma_last, max_abs_delta, sha256_ok (None when not checked), boundaries (the
        certificates, [] for one file).

    Raises:
        DataError: as open_dataset, plus a checksum mismatch, a non-increasing step anywhere
            (also across shards) or a failed boundary certificate, naming the shard.
    """
    return verify_opened(open_dataset(path), full=full)


def verify_opened(ds: ZerosDataset, *, full: bool = True) -> dict:
    """verify_dataset of an already opened (or not yet written) dataset."""
    worst = 0.0
    previous = -math.inf
    boundaries = []
    for k, shard in enumerate(ds.shards):
        array = ds.shard_array(k)
        where = ds.where(k)
        if full:
            _sha_check(shard.sha256, where)(Path(array.filename))
            previous = _scan_all(array, shard.first_index, where, previous)
        worst = max(worst, _check_counting(array, shard.first_index, where, checkpoints=None if full else 64))
    if full and ds.sharded:
        worst = max(worst, _boundary_windows(ds))
        boundaries = [certify_boundary(ds, k) for k in range(1, len(ds.shards))]
    return {
        "path": ds.path,
        "source": ds.manifest["source"],
        "first_index": ds.first_index,
        "last_index": ds.last_index,
        "count": ds.count,
        "shards": len(ds.shards),
        "gamma_first": float(ds.ordinates(ds.first_index, ds.first_index + 1)[0]),
        "gamma_last": float(ds.ordinates(ds.last_index, ds.last_index + 1)[0]),
        "max_abs_delta": worst,
        "sha256_ok": True if full else None,
        "boundaries": boundaries,
    }


def _manifest_text(manifest: dict) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def dataset_bytes(count: int) -> int:
    """Disk bytes a dataset (or shard) of `count` zeros takes: float64 ordinates, and 1 MiB for the
    .npy header, the manifest and the filesystem's rounding."""
    return 8 * count + (1 << 20)


def check_free_space(out: str, nbytes: int, flag: str) -> None:
    """Refuse (DataError naming `flag`) when the local filesystem of `out` has less than nbytes free."""
    if storage.is_remote(out):
        return
    probe = Path(out)
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < nbytes:
        raise DataError(
            f"{flag}: needs {nbytes / 1e6:,.0f} MB at {out}, only {free / 1e6:,.0f} MB free; "
            "free some space or write elsewhere"
        )


def write_dataset(
    out_dir: str | os.PathLike,
    zeros: np.ndarray,
    *,
    source: str,
    first_index: int,
    abs_accuracy: float,
    params: dict | None = None,
) -> dict:
    """Validate zeros and write them as a single-file dataset, atomically.

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
    check_free_space(out, dataset_bytes(zeros.size), "--out")
    manifest = {
        "source": source,
        "first_index": int(first_index),
        "count": int(zeros.size),
        "sha256": sha,
        "abs_accuracy": float(abs_accuracy),
        "created": _now(),
        "params": params or {},
    }
    if storage.is_remote(out):
        with tempfile.TemporaryDirectory() as tmp:
            npy = Path(tmp) / ZEROS_FILE
            np.save(npy, zeros.astype("<f8"), allow_pickle=False)
            storage.upload_file(npy, storage.join(out, ZEROS_FILE))
        storage.write_text_atomic(storage.join(out, MANIFEST_FILE), _manifest_text(manifest))
        return manifest
    final = Path(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        np.save(tmp / ZEROS_FILE, zeros.astype("<f8"), allow_pickle=False)
        (tmp / MANIFEST_FILE).write_text(_manifest_text(manifest))
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


# --- sharded datasets ---------------------------------------------------------------------------
# A job writes shards/NNNNN.npy, then its record shards/NNNNN.json (the manifest entry plus the
# job's source and params): a record exists only for a complete shard. `merge_shards` checks all
# of them and writes manifest.json last, so a directory without it is never taken for a dataset.


def _record_uri(out: str, k: int) -> str:
    return storage.join(out, f"{SHARDS_DIR}/{k:05d}.json")


def read_shard_record(out: str, k: int) -> dict | None:
    """Shard k's record, or None when the shard is not (completely) written."""
    uri = _record_uri(out, k)
    if not storage.exists(uri):
        return None
    record = _parse_record(storage.read_text(uri), uri)
    return record


def _parse_record(text: str, where: str) -> dict:
    record = _json_object(text, where)
    for key, kind in _SHARD_REQUIRED.items():
        _check_type(record, key, kind, where, "")
    return record


def write_shard(
    out_dir: str | os.PathLike,
    k: int,
    zeros: np.ndarray,
    *,
    source: str,
    first_index: int,
    abs_accuracy: float,
    params: dict | None = None,
) -> dict:
    """Validate zeros and write them as shard k of the sharded dataset at out_dir.

    The array goes to shards/NNNNN.npy (atomic rename, or one upload), then the record
    shards/NNNNN.json. Writing the same shard again is a no-op; a shard k already there with
    other values is refused (DataError naming it), as is a merged dataset at out_dir.

    Returns:
        The shard record written (or found).
    """
    out = str(out_dir)
    zeros = np.ascontiguousarray(zeros, dtype=np.float64)
    where = storage.join(out, shard_name(k))
    validate_zeros(zeros, first_index, where)
    sha = array_sha256(zeros)
    _refuse_single_file(out)
    old = read_shard_record(out, k)
    if old is not None:
        if old["sha256"] == sha and old["first_index"] == first_index:
            return old
        raise DataError(
            f"{where}: shard {k} already holds zeros n={old['first_index']}..{old['first_index'] + old['count'] - 1} "
            f"with other values (this run: n={first_index}..{first_index + zeros.size - 1}); "
            "choose another --out or remove the shard"
        )
    check_free_space(out, dataset_bytes(zeros.size), "--out")
    record = {
        "path": shard_name(k),
        "first_index": int(first_index),
        "count": int(zeros.size),
        "sha256": sha,
        "abs_accuracy": float(abs_accuracy),
        "source": source,
        "created": _now(),
        "params": params or {},
    }
    if storage.is_remote(out):
        with tempfile.TemporaryDirectory() as tmp:
            npy = Path(tmp) / "shard.npy"
            np.save(npy, zeros.astype("<f8"), allow_pickle=False)
            storage.upload_file(npy, where)
    else:
        final = Path(where)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, zeros.astype("<f8"), allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(name, 0o644)  # mkstemp makes 0600
            os.replace(name, final)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
    storage.write_text_atomic(_record_uri(out, k), _manifest_text(record))
    return record


def _refuse_single_file(out: str) -> None:
    manifest_uri = storage.join(out, MANIFEST_FILE)
    if storage.exists(manifest_uri) and "shards" not in _parse_manifest(
        storage.read_text(manifest_uri), manifest_uri
    ):
        raise DataError(f"{out}: holds a single-file dataset; write shards into another directory")


def list_shard_records(out: str) -> dict[int, dict]:
    """Shard number -> record, for every complete shard under out/shards/."""
    records = {}
    for name in storage.list_names(storage.join(out, SHARDS_DIR)):
        stem, ext = posixpath.splitext(name)
        if ext == ".json" and stem.isdigit():
            records[int(stem)] = _parse_record(
                storage.read_text(storage.join(out, SHARDS_DIR, name)), storage.join(out, SHARDS_DIR, name)
            )
    return records


def merge_shards(out_dir: str | os.PathLike, *, expect: list[tuple[int, int]] | None = None) -> dict:
    """Check every shard under out_dir and write its manifest.json (last), atomically.

    The shards must tile one contiguous index range; each is checked in full (sha256, values,
    counting windows), the window across each joint, and the count certificate at every
    boundary (certify_boundary), which the manifest records under `boundaries`.

    Args:
        out_dir: the sharded dataset directory (local or gs://).
        expect: (first_index, count) of every shard, in order, when the caller knows the plan;
            a shard record missing or different from it is an error naming the shard.

    Returns:
        The manifest written (or the same one already there).

    Raises:
        DataError: naming the shard, on a missing, overlapping, non-contiguous or corrupt shard.
    """
    out = str(out_dir)
    _refuse_single_file(out)
    records = list_shard_records(out)
    if expect is not None:
        for k, (first, count) in enumerate(expect):
            record = records.get(k)
            where = storage.join(out, shard_name(k))
            if record is None:
                raise DataError(f"{where}: missing shard (no record {_record_uri(out, k)})")
            if (record["first_index"], record["count"]) != (first, count):
                raise DataError(
                    f"{where}: holds n={record['first_index']}..{record['first_index'] + record['count'] - 1}, "
                    f"the plan says n={first}..{first + count - 1}"
                )
        extra = sorted(set(records) - set(range(len(expect))))
        if extra:
            raise DataError(f"{storage.join(out, shard_name(extra[0]))}: a shard outside the plan")
    if not records:
        raise DataError(f"{out}: no shards (no {SHARDS_DIR}/NNNNN.json records)")
    ordered = [records[k] for k in sorted(records, key=lambda k: records[k]["first_index"])]
    entries = [{key: r[key] for key in _SHARD_REQUIRED} for r in ordered]
    first = entries[0]["first_index"]
    count = sum(e["count"] for e in entries)
    sources = sorted({r["source"] for r in ordered})
    manifest = {
        "source": "+".join(sources),
        "first_index": first,
        "count": count,
        "sha256": shard_list_sha256(entries),
        "abs_accuracy": max(e["abs_accuracy"] for e in entries),
        "created": _now(),
        "params": {"shard_params": [r.get("params", {}) for r in ordered]},
        "shards": entries,
    }
    manifest_uri = storage.join(out, MANIFEST_FILE)
    if storage.exists(manifest_uri):
        old = _parse_manifest(storage.read_text(manifest_uri), manifest_uri)
        if old["sha256"] == manifest["sha256"] and old.get("boundaries") is not None:
            return old
    ds = dataset_from_manifest(out, manifest)
    summary = verify_opened(ds, full=True)
    manifest["boundaries"] = summary["boundaries"]
    manifest["boundaries_certified"] = len(summary["boundaries"]) == len(entries) - 1
    storage.write_text_atomic(manifest_uri, _manifest_text(manifest))
    return manifest
