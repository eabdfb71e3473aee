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
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.onsite.settings import Learning

log = logging.getLogger(__name__)
ROWS = "baseline.npy"
STATE = "baseline.json"


def fingerprint(spec: FeatureSpec) -> str:
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()


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
        _replace(self.folder / ROWS, lambda f: np.save(f, self.matrix(), allow_pickle=False))
        state = {
            "spec_sha256": self.spec_sha256,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "stride": self.stride,
            "seen": self.seen,
        }
        _replace(self.folder / STATE, lambda f: f.write(json.dumps(state).encode()))
        self.saved = self.count

    def clear(self) -> None:
        """Start again from nothing, on disk too."""
        self.count, self.stride, self.seen, self.saved = 0, 1, 0, 0
        self.first_ts = self.last_ts = None
        for name in (ROWS, STATE):
            (self.folder / name).unlink(missing_ok=True)

    def _resume(self) -> None:
        try:
            state = json.loads((self.folder / STATE).read_bytes())
            rows = np.load(self.folder / ROWS, allow_pickle=False)
        except FileNotFoundError:
            return
        except (OSError, ValueError, RecursionError) as e:
            log.warning(
                "%s: the baseline on disk does not read back, starting afresh: %s", self.folder, e
            )
            return
        ok = (
            isinstance(state, dict)
            and state.get("spec_sha256") == self.spec_sha256
            and rows.dtype == np.float32
            and rows.ndim == 2
            and rows.shape[1] == self.width
            and len(rows) <= self.settings.max_rows
            and np.isfinite(rows).all()
            and isinstance(state.get("stride"), int)
            and isinstance(state.get("seen"), int)
            and all(isinstance(state.get(k), float | int) for k in ("first_ts", "last_ts"))
        )
        if not ok:
            log.warning(
                "%s: the baseline on disk is for another spec or damaged, starting afresh",
                self.folder,
            )
            return
        self.count = self.saved = len(rows)
        self.rows = np.empty((max(len(rows), len(self.rows)), self.width), np.float32)
        self.rows[: self.count] = rows
        self.stride, self.seen = max(1, state["stride"]), max(0, state["seen"])
        self.first_ts, self.last_ts = float(state["first_ts"]), float(state["last_ts"])


def _replace(path: Path, write: Callable[[BinaryIO], object]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    partial.replace(path)
