"""The Odlyzko table of the first 2,001,052 zeta zeros, as shipped on PyPI.

The wheel `passagemath-database-odlyzko-zeta` (the trainer's `data` extra) installs
`sage_wheels/share/odlyzko/zeros.sobj`: a zlib-compressed protocol-2 pickle of a list of
floats, read here through the opcode-level safe loader, never through `pickle`.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np

from trainer.data.safe_pickle import load_sobj
from trainer.errors import DataError

DISTRIBUTION = "passagemath-database-odlyzko-zeta"
TABLE_PATH = "sage_wheels/share/odlyzko/zeros.sobj"
TABLE_COUNT = 2_001_052
TABLE_ACCURACY = 4e-9  # Odlyzko's stated absolute accuracy of the ordinates


def table_path() -> Path:
    """Path of the installed `zeros.sobj`.

    Raises:
        DataError: if the distribution or the file is not installed.
    """
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as e:
        raise DataError(
            f"the Odlyzko table needs the PyPI package {DISTRIBUTION}: pip install 'zeta-swarm-trainer[data]'"
        ) from e
    path = Path(dist.locate_file(TABLE_PATH))
    if not path.is_file():
        raise DataError(f"{DISTRIBUTION} is installed but {path} is missing; reinstall it")
    return path


def load_table(count: int | None = None) -> np.ndarray:
    """The first `count` zeros of the Odlyzko table (all 2,001,052 when None), float64.

    Raises:
        DataError: if count is out of range or the package is missing.
        UnsafePickleError: if the installed file is anything but a list of floats.
    """
    if count is not None and not 1 <= count <= TABLE_COUNT:
        raise DataError(f"--count must be in [1, {TABLE_COUNT}], got {count}")
    path = table_path()
    zeros = load_sobj(path.read_bytes(), source=str(path))
    if zeros.size != TABLE_COUNT:
        raise DataError(f"{path}: expected {TABLE_COUNT} zeros, found {zeros.size}")
    return zeros if count is None else zeros[:count].copy()
