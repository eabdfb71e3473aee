"""One device's baseline as it grows: the feature rows of its normal running, in time order,
kept on disk so that a restart resumes it.

Memory stays bounded: past ``max_rows`` the baseline keeps every other row and from then on
takes every other new one (and so on, doubling), so it still spans the whole collection. It is
complete once it holds ``min_rows`` rows over at least ``duration_s`` seconds of data.

On disk a baseline is ``baseline.npy`` (float32 rows) and ``baseline.json`` (its times, its
stride and a fingerprint of the feature spec), each replaced atomically. A file that does not
read back, or was written for another spec, starts the baseline afresh.
"""

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.onsite.settings import Learning
from edgewatch.agent.table import read_npy

log = logging.getLogger(__name__)
ROWS = "baseline.npy"
STATE = "baseline.json"


# Spec fields added since baselines were first saved: left out of the fingerprint while unset,
# so that a baseline saved before them still matches its spec.
LATER_FIELDS = ("speed",)


def fingerprint(spec: FeatureSpec) -> str:
    unset = {name for name in LATER_FIELDS if getattr(spec, name) is None}
    return hashlib.sha256(spec.model_dump_json(exclude=unset).encode()).hexdigest()


class Baseline:
    def __init__(self, folder: Path, spec: FeatureSpec, settings: Learning) -> None:
        self.folder, self.settings = folder, settings
        self.spec_sha256 = fingerprint(spec)
        self.width = len(spec.feature_names)
        self.rows = np.empty((min(1024, settings.max_rows), self.width), np.float32)
        self.count = 0
        self.stride = 1
        self.seen = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.saved = 0
        self._resume()

    @property
    def span_s(self) -> float:
        return (
            0.0 if self.first_ts is None or self.last_ts is None else self.last_ts - self.first_ts
        )

    @property
    def complete(self) -> bool:
        return self.count >= self.settings.min_rows and self.span_s >= self.settings.duration_s

    @property
    def progress(self) -> float:
        """How far along it is, from 0 to 1: the lesser of its rows and its span, each as a
        share of what it needs."""
        rows = self.count / self.settings.min_rows
        span = self.span_s / self.settings.duration_s if self.settings.duration_s else 1.0
        return min(1.0, rows, span)

    def add(self, ends: np.ndarray, rows: np.ndarray) -> None:
        """Rows of normal running that end at the times ``ends``."""
        if not len(rows):
            return
        if self.first_ts is None:
            self.first_ts = float(ends[0])
        self.last_ts = float(ends[-1])
        for index, row in enumerate(rows, self.seen):
            if index % self.stride:
                continue
            if self.count == len(self.rows) < self.settings.max_rows:
                size = min(2 * self.count, self.settings.max_rows)
                grown = np.empty((size, self.width), np.float32)
                grown[: self.count] = self.rows
                self.rows = grown
            elif self.count == len(self.rows):
                self.count = (self.count + 1) // 2
                self.rows[: self.count] = self.rows[: 2 * self.count : 2]
                self.stride *= 2
                self.saved = 0
                if index % self.stride:
                    continue
            self.rows[self.count] = row
            self.count += 1
        self.seen += len(rows)

    def matrix(self) -> np.ndarray:
        return self.rows[: self.count]

    def save(self) -> None:
        """Write what it holds, atomically; ``OSError`` when the disk refuses."""
        self.folder.mkdir(parents=True, exist_ok=True)
        replace_file(self.folder / ROWS, lambda f: np.save(f, self.matrix(), allow_pickle=False))
        state = {
            "spec_sha256": self.spec_sha256,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "stride": self.stride,
            "seen": self.seen,
        }
        replace_file(self.folder / STATE, lambda f: f.write(json.dumps(state).encode()))
        self.saved = self.count

    def clear(self) -> None:
        """Start again from nothing, on disk too."""
        self.count, self.stride, self.seen, self.saved = 0, 1, 0, 0
        self.first_ts = self.last_ts = None
        discard(self.folder)

    def _resume(self) -> None:
        try:
            state, rows = (self.folder / STATE).read_bytes(), (self.folder / ROWS).read_bytes()
        except FileNotFoundError:
            return
        except OSError as e:
            log.warning("%s: the baseline on disk does not read: %s", self.folder, e)
            return
        try:
            kept = restore(state, rows, self.spec_sha256, self.width, self.settings.max_rows)
        except ValueError as e:
            log.warning("%s: starting the baseline afresh: %s", self.folder, e)
            return
        self.count = self.saved = len(kept.rows)
        self.rows = np.empty((max(self.count, len(self.rows)), self.width), np.float32)
        self.rows[: self.count] = kept.rows
        self.stride, self.seen = kept.stride, kept.seen
        self.first_ts, self.last_ts = kept.first_ts, kept.last_ts


def discard(folder: Path) -> None:
    """Remove the baseline saved in ``folder``."""
    for name in (ROWS, STATE):
        (folder / name).unlink(missing_ok=True)


@dataclass(frozen=True)
class Saved:
    """A baseline as it was saved."""

    rows: np.ndarray
    stride: int
    seen: int
    first_ts: float
    last_ts: float


def restore(state: bytes, rows: bytes, spec_sha256: str, width: int, max_rows: int) -> Saved:
    """The baseline in a saved state (JSON) and rows (NPY) for the spec with ``spec_sha256``;
    ``ValueError`` says why it cannot be taken back.

    >>> restore(b"{}", b"", "0" * 64, 3, 10)
    Traceback (most recent call last):
    ValueError: the saved state is for another feature spec
    """
    try:
        saved = json.loads(state)
    except RecursionError:
        raise ValueError("the saved state is not JSON") from None
    if not isinstance(saved, dict) or saved.get("spec_sha256") != spec_sha256:
        raise ValueError("the saved state is for another feature spec")
    stride, seen = saved.get("stride"), saved.get("seen")
    if not (
        type(stride) is int and type(seen) is int and 0 < stride < 1 << 62 and 0 <= seen < 1 << 62
    ):
        raise ValueError("the saved stride and count are not counts")
    times = [saved.get("first_ts"), saved.get("last_ts")]
    if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in times):
        raise ValueError("the saved times are not times")
    first, last = (float(t) if abs(t) < 1e12 else math.nan for t in times)  # type: ignore[arg-type]
    if not (math.isfinite(first) and math.isfinite(last)):
        raise ValueError("the saved times are not times")
    data = read_npy(rows)
    if data.dtype != np.float32 or data.ndim != 2 or data.shape[1] != width:
        raise ValueError(f"the saved rows are not float32 rows of {width} features")
    if len(data) > max_rows or not np.isfinite(data).all():
        raise ValueError("the saved rows are too many, or not finite")
    return Saved(data, stride, seen, first, last)


def replace_file(path: Path, write: Callable[[BinaryIO], object]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    partial.replace(path)
