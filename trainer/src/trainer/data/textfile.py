"""Zeros from text files (Odlyzko's and LMFDB's plain tables) and `.sobj` pickles.

Supported text layout, optionally gzip-compressed (by `.gz` suffix or gzip magic bytes):
  * one ordinate per line, e.g. Odlyzko's `zeros1` ("    14.134725142"), or
  * two columns `index ordinate` (whitespace-separated), indices consecutive: the file then
    fixes the first index;
  * blank lines and lines starting with `#` or `%` are skipped.
Not supported: Odlyzko's high-height tables (`zeros3`..), which list offsets from a base
height given in a header; convert them to absolute ordinates first.
`.sobj` files go through the opcode-level safe loader (a list of floats, nothing else).
"""

from __future__ import annotations

import gzip
import math
import os
from typing import NamedTuple

import numpy as np

from trainer import storage
from trainer.data.safe_pickle import load_sobj
from trainer.errors import DataError

_GZIP_MAGIC = b"\x1f\x8b"


class ZerosTable(NamedTuple):
    """Ordinates read from a file, with what the file itself says about them."""

    zeros: np.ndarray
    first_index: int | None  # from a two-column file, else None
    abs_accuracy: float  # half a unit of the last printed digit; float64 rounding for .sobj
    lines: np.ndarray | None = None  # the line of each ordinate in a text file (for messages)


def _decode(data: bytes, where: str) -> str:
    if where.endswith(".gz") or data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise DataError(f"{where}: not a valid gzip file ({e})") from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: not UTF-8 text (byte {e.start})") from e


def parse_text(text: str, where: str) -> ZerosTable:
    """Parse a text table.

    Args:
        text: file content.
        where: file name for error messages.

    Returns:
        ZerosTable; abs_accuracy is half a unit in the last decimal of the first entry.

    Raises:
        DataError: naming the file and line of the first unparsable, non-finite or
            inconsistent entry, or an empty file.
    """
    values: list[float] = []
    lines: list[int] = []
    first_index: int | None = None
    columns: int | None = None
    decimals = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#%":
            continue
        fields = line.split()
        if columns is None:
            columns = len(fields)
            mantissa = fields[-1].lower().split("e")[0]
            decimals = len(mantissa.partition(".")[2])
            if columns not in (1, 2):
                raise DataError(
                    f"{where}:{lineno}: expected 'ordinate' or 'index ordinate', got {len(fields)} fields"
                )
        elif len(fields) != columns:
            raise DataError(
                f"{where}:{lineno}: expected {columns} field(s) like the lines before, got {len(fields)}"
            )
        try:
            value = float(fields[-1])
        except ValueError:
            raise DataError(f"{where}:{lineno}: not a number: {fields[-1]!r}") from None
        if not math.isfinite(value):
            raise DataError(f"{where}:{lineno}: {fields[-1]!r} is not a finite number")
        if columns == 2:
            try:
                index = int(fields[0])
            except ValueError:
                raise DataError(f"{where}:{lineno}: index is not an integer: {fields[0]!r}") from None
            if first_index is None:
                first_index = index
            elif index != first_index + len(values):
                raise DataError(
                    f"{where}:{lineno}: index {index}, expected {first_index + len(values)} (consecutive)"
                )
        if values and value <= values[-1]:
            raise DataError(
                f"{where}:{lineno}: {value!r} is not greater than the previous ordinate {values[-1]!r}"
            )
        values.append(value)
        lines.append(lineno)
    if not values:
        raise DataError(f"{where}: no zeros in the file (empty, or only blank and comment lines)")
    zeros = np.array(values, dtype=np.float64)
    accuracy = max(0.5 * 10.0**-decimals, math.ulp(float(zeros[-1])))
    return ZerosTable(zeros, first_index, accuracy, np.array(lines, dtype=np.int64))


def check_count_at_end(table: ZerosTable, first_index: int, where: str, tail: int = 64) -> None:
    """Refuse a table whose last `tail` ordinates are not zeros n = ..first_index + count - 1.

    The dataset's counting-function windows (dataset.validate_zeros) see a missing or extra zero
    by the shift of +-1 it gives every later zero, averaged over 64 of them; one in the last ~25
    lines shifts too few to see. Hardy's Z changes sign at every zero and Z(0) < 0, so just above
    zero n it has the sign -(-1)**n: checked here just above each of the last `tail` ordinates,
    a point inside its gap (at most half of it) and beyond the ordinate's own accuracy.

    Raises:
        DataError: naming the line (or the ordinate of a .sobj) of the first ordinate whose
            sign is wrong: a zero is missing or extra at or before it.
    """
    from trainer.data.riemann_siegel import HardyZ

    zeros = table.zeros
    lo = max(0, zeros.size - tail)
    gamma = zeros[lo:]
    # The gap after each ordinate; the last one has none listed, so it borrows the gap before it.
    gaps = np.diff(zeros[lo:])
    after = np.append(gaps, gaps[-1] if gaps.size else 1.0)
    step = np.minimum(0.5 * after, max(1e-6, 10 * table.abs_accuracy))
    values = HardyZ(float(gamma[0]), float(gamma[-1] + step[-1]) + 1.0)(gamma + step)
    n = first_index + lo + np.arange(gamma.size)
    expected = np.where(n % 2 == 1, 1.0, -1.0)
    bad = np.flatnonzero(np.sign(values) != expected)
    if bad.size:
        i = int(bad[0])
        at = (
            f"{where}:{int(table.lines[lo + i])}"
            if table.lines is not None
            else f"{where}: ordinate {lo + i + 1}"
        )
        raise DataError(
            f"{at}: {float(gamma[i])!r} is not zero n={int(n[i])}: Hardy's Z just above it has the sign of "
            "zero n-1's or n+1's gap, so a zero is missing or extra at or before this line"
        )


def read_zeros_file(path: str | os.PathLike) -> ZerosTable:
    """Read ordinates from a text table (plain or .gz) or a .sobj pickle, local or gs://.

    Returns:
        ZerosTable (ordinates, the file's first index or None, accuracy implied by the file).

    Raises:
        DataError / UnsafePickleError: missing file, bad content (with line number), unsafe pickle.
    """
    where = str(path)
    data = storage.read_bytes(where)
    if where.endswith(".sobj"):
        zeros = load_sobj(data, source=where)
        if zeros.size == 0:
            raise DataError(f"{where}: the pickled list is empty")
        return ZerosTable(zeros, None, math.ulp(float(zeros.max())))
    return parse_text(_decode(data, where), where)
