"""Atomic file writes: a temporary name in the same directory, fsync, then rename. A reader sees
the old content or the new, never half of either; a crash leaves at most a stray temp file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Replace `path` with `text` atomically.

    Args:
        path: destination file; its directory must exist.
        text: the full new content (UTF-8).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; run files are for every reader
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, obj: object, indent: int | None = None) -> None:
    """Replace `path` with `obj` as JSON atomically.

    Args:
        path: destination file.
        obj: anything `json.dumps` accepts.
        indent: JSON indentation (default: compact).
    """
    write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line with a single O_APPEND write (lines from one writer never interleave)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
    finally:
        os.close(fd)
