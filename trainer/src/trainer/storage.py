"""The one filesystem layer: local paths and gs:// URLs behind the same few functions.

Nothing else in the trainer knows which kind of location it holds. google-cloud-storage is
imported on first remote use, so local work never pays for it. The client honours
STORAGE_EMULATOR_HOST (tests point it at gcp-storage-emulator); against an emulator it uses
anonymous credentials, since the emulator checks none.

Remote files that are read whole by numpy (a dataset's zeros.npy or shards) are fetched on
first use into a local cache, $ZETA_SWARM_CACHE or ~/.cache/zeta-swarm, keyed by URL and content
version, and bounded in bytes by $ZETA_SWARM_CACHE_BYTES (default 8 GiB): the least recently
used files go first (a file in use stays readable: Linux keeps an unlinked file's mapping).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from trainer.errors import DataError

GS_PREFIX = "gs://"


def is_remote(uri: str | os.PathLike) -> bool:
    """True for gs:// URLs, False for local paths."""
    return str(uri).startswith(GS_PREFIX)


def join(uri: str | os.PathLike, *parts: str) -> str:
    """Join path components under uri with the right separator for its kind."""
    if is_remote(uri):
        return posixpath.join(str(uri), *parts)
    return os.path.join(os.fspath(uri), *parts)


def _split(uri: str) -> tuple[str, str]:
    rest = uri[len(GS_PREFIX) :]
    bucket, _, name = rest.partition("/")
    if not bucket:
        raise DataError(f"{uri}: a gs:// URL needs a bucket name")
    return bucket, name.strip("/")


_CLIENTS: dict[str | None, object] = {}


def _client():
    """A storage client per emulator host (or None for real GCS), created lazily."""
    host = os.environ.get("STORAGE_EMULATOR_HOST")
    if host not in _CLIENTS:
        from google.cloud import storage

        if host:
            from google.auth.credentials import AnonymousCredentials

            project = os.environ.get("GOOGLE_CLOUD_PROJECT", "zeta-swarm-test")
            _CLIENTS[host] = storage.Client(project=project, credentials=AnonymousCredentials())
        else:
            _CLIENTS[host] = storage.Client()
    return _CLIENTS[host]


def _blob(uri: str):
    bucket, name = _split(uri)
    if not name:
        raise DataError(f"{uri}: names a bucket, not an object")
    return _client().bucket(bucket).blob(name)


@contextlib.contextmanager
def _remote(uri: str):
    """Translate GCS errors the user can fix into one-line DataErrors naming the URL."""
    from google.api_core import exceptions

    try:
        yield
    except exceptions.NotFound as e:
        raise DataError(f"{uri}: no such object or bucket ({e.code} {type(e).__name__})") from e
    except exceptions.Forbidden as e:
        raise DataError(
            f"{uri}: permission denied ({e.code}); check the credentials' IAM roles on the bucket"
        ) from e


def exists(uri: str | os.PathLike) -> bool:
    """True if uri names an existing file, directory, object or object prefix ("directory")."""
    uri = str(uri)
    if not is_remote(uri):
        return os.path.exists(uri)
    from google.api_core import exceptions

    bucket, name = _split(uri)
    with _remote(uri):
        if name and _client().bucket(bucket).blob(name).exists():
            return True
        prefix = f"{name}/" if name else ""
        try:
            return any(True for _ in _client().list_blobs(bucket, prefix=prefix, max_results=1))
        except exceptions.NotFound:  # no such bucket: nothing exists in it
            return False


def read_bytes(uri: str | os.PathLike) -> bytes:
    """The whole content of a file or object.

    Raises:
        DataError: if it does not exist (naming the path or URL).
    """
    uri = str(uri)
    if is_remote(uri):
        with _remote(uri):
            return _blob(uri).download_as_bytes()
    try:
        return Path(uri).read_bytes()
    except FileNotFoundError as e:
        raise DataError(f"{uri}: no such file") from e
    except IsADirectoryError as e:
        raise DataError(f"{uri}: is a directory, expected a file") from e


def read_text(uri: str | os.PathLike) -> str:
    """read_bytes decoded as UTF-8."""
    data = read_bytes(uri)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{uri}: not UTF-8 text ({e})") from e


_UMASK = os.umask(0)
os.umask(_UMASK)


def _temp_beside(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def write_bytes_atomic(uri: str | os.PathLike, data: bytes) -> None:
    """Write data so that readers see the old content or the new, never a part.

    Local: a temporary file in the same directory, fsync, then os.replace. gs://: a single
    upload, which GCS makes visible atomically. Parent directories are created.
    """
    uri = str(uri)
    if is_remote(uri):
        with _remote(uri):
            _blob(uri).upload_from_string(data)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(path)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a written file honours the umask
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(uri: str | os.PathLike, text: str) -> None:
    """write_bytes_atomic of UTF-8 text."""
    write_bytes_atomic(uri, text.encode("utf-8"))


def upload_file(local_path: str | os.PathLike, uri: str | os.PathLike) -> None:
    """Copy a local file to uri (local or gs://), atomically."""
    uri = str(uri)
    if is_remote(uri):
        with _remote(uri):
            _blob(uri).upload_from_filename(os.fspath(local_path))
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(path)
    try:
        shutil.copyfile(local_path, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def download_file(uri: str | os.PathLike, local_path: str | os.PathLike) -> None:
    """Copy uri (local or gs://) to a local file, atomically.

    Raises:
        DataError: if uri does not exist.
    """
    uri = str(uri)
    dest = Path(local_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(dest)
    try:
        if is_remote(uri):
            with _remote(uri):
                _blob(uri).download_to_filename(os.fspath(tmp))
        else:
            try:
                shutil.copyfile(uri, tmp)
            except FileNotFoundError as e:
                raise DataError(f"{uri}: no such file") from e
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def list_names(uri: str | os.PathLike) -> list[str]:
    """Names of the files directly under a directory (or object prefix); [] if there is none."""
    uri = str(uri)
    if not is_remote(uri):
        try:
            return sorted(p.name for p in Path(uri).iterdir() if p.is_file())
        except FileNotFoundError:
            return []
    from google.api_core import exceptions

    bucket, name = _split(uri)
    prefix = f"{name}/" if name else ""
    with _remote(uri):
        try:
            blobs = _client().list_blobs(bucket, prefix=prefix, delimiter="/")
            return sorted(b.name[len(prefix) :] for b in blobs)
        except exceptions.NotFound:
            return []


DEFAULT_CACHE_BYTES = 8 << 30


def cache_limit() -> int:
    """Bytes the cache may hold: $ZETA_SWARM_CACHE_BYTES, else 8 GiB."""
    return int(os.environ.get("ZETA_SWARM_CACHE_BYTES") or DEFAULT_CACHE_BYTES)


def _evict(root: Path, limit: int, keep: Path) -> None:
    """Delete the least recently used cached files until the cache holds at most `limit` bytes."""
    files = [p for p in root.glob("*/*") if p.is_file() and not p.name.startswith(".")]
    total = sum(p.stat().st_size for p in files)
    for path in sorted(files, key=lambda p: p.stat().st_mtime):
        if total <= limit:
            break
        if path == keep:
            continue
        size = path.stat().st_size
        path.unlink(missing_ok=True)
        total -= size


def cache_root() -> Path:
    """Directory of the local cache: $ZETA_SWARM_CACHE, else ~/.cache/zeta-swarm."""
    return Path(os.environ.get("ZETA_SWARM_CACHE") or Path.home() / ".cache" / "zeta-swarm")


def local_copy(
    uri: str | os.PathLike,
    *,
    version: str = "",
    check: Callable[[Path], None] | None = None,
) -> Path:
    """A local path holding the content of uri.

    Local paths are returned as they are. A gs:// object is downloaded on first use into the cache
    (least recently used files evicted past cache_limit() bytes), under a key made of its URL
    and `version` (a content hash from a manifest), so a changed object is fetched again.
    The download is checked before it is renamed into place, so a cached file is always a
    checked one.

    Args:
        uri: local path or gs:// URL of a file.
        version: content identifier, e.g. the sha256 recorded in a dataset manifest.
        check: called with the freshly downloaded temporary file; raises (e.g. DataError) to
            reject it, in which case nothing is cached.

    Raises:
        DataError: if uri does not exist, or as raised by check.
    """
    uri = str(uri)
    if not is_remote(uri):
        if not os.path.exists(uri):
            raise DataError(f"{uri}: no such file")
        return Path(uri)
    key = hashlib.sha256(f"{uri}\n{version}".encode()).hexdigest()[:32]
    dest = cache_root() / key / posixpath.basename(uri)
    if dest.is_file():
        os.utime(dest)  # most recently used
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.download"
    try:
        download_file(uri, tmp)
        if check is not None:
            check(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    _evict(cache_root(), cache_limit(), keep=dest)
    return dest


def remove_tree(uri: str | os.PathLike) -> None:
    """Delete a directory (or object prefix) and everything under it; missing is fine."""
    uri = str(uri)
    if not is_remote(uri):
        shutil.rmtree(uri, ignore_errors=True)
        return
    bucket, name = _split(uri)
    prefix = f"{name}/" if name else ""
    with _remote(uri):
        blobs = list(_client().list_blobs(bucket, prefix=prefix))
        if name:
            single = _client().bucket(bucket).blob(name)
            if single.exists():
                blobs.append(single)
        for blob in blobs:
            blob.delete()
