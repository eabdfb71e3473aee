"""The windows an operator labelled on one device: the rows of the alerts called ``normal``
and of those confirmed ``anomaly``, kept beside the device's baseline, the latest ``MAX_ROWS``
of each.

A re-fit learns the ``normal`` rows as normal and must still score every ``anomaly`` row above
its warning. On disk each is an NPY file of float32 rows, replaced atomically. A file that
does not read back as rows of the device's features counts as empty, and is logged.
"""

import logging
from pathlib import Path
from typing import Literal

import numpy as np

from edgewatch.agent.onsite.baseline import replace_file
from edgewatch.agent.table import read_npy

log = logging.getLogger(__name__)
Kind = Literal["normal", "anomaly"]
MAX_ROWS = 1000


def path(folder: Path, kind: Kind) -> Path:
    return folder / f"labelled_{kind}.npy"


def read(folder: Path, kind: Kind, width: int) -> np.ndarray:
    """The rows labelled ``kind``, oldest first: ``rows[n, width]`` float32, maybe none."""
    try:
        return rows_of(path(folder, kind).read_bytes(), width)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as e:
        log.warning("%s: the %s windows do not read: %s", folder, kind, e)
    return np.empty((0, width), np.float32)


def rows_of(data: bytes, width: int) -> np.ndarray:
    """The finite rows an NPY file of labelled windows holds; ``ValueError`` when it is not
    float32 rows of ``width`` features.

    >>> rows_of(b"", 3)
    Traceback (most recent call last):
    ValueError: not an NPY array (EOFError: No data left in file)
    """
    rows = read_npy(data)
    if rows.dtype != np.float32 or rows.ndim != 2 or rows.shape[1] != width:
        raise ValueError(f"not float32 rows of {width} features")
    finite: np.ndarray = rows[np.isfinite(rows).all(axis=1)]
    return finite


def add(folder: Path, kind: Kind, new: np.ndarray) -> np.ndarray:
    """Keep more rows labelled ``kind`` (dropping the oldest beyond ``MAX_ROWS``); all the
    rows kept. ``OSError`` when the disk refuses."""
    old = read(folder, kind, new.shape[1])
    rows = np.concatenate([old, new.astype(np.float32)])[-MAX_ROWS:]
    folder.mkdir(parents=True, exist_ok=True)
    replace_file(path(folder, kind), lambda f: np.save(f, rows, allow_pickle=False))
    return rows


def clear(folder: Path) -> None:
    kinds: tuple[Kind, ...] = ("normal", "anomaly")
    for kind in kinds:
        path(folder, kind).unlink(missing_ok=True)
