"""Historical data for training: CSV and NPY files, SKAB, the simulator; and their features.

Every dataset is samples ``[n, channels]`` in time order with optional 0/1 labels per sample.
Features always come from ``agent.features``, the featurizer the gateway runs, and splits keep
time order.
"""

import hashlib
import io
import math
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from edgewatch.agent.features import FeatureError, FeatureSpec
from edgewatch.agent.featurizer import recording_features
from edgewatch.agent.table import TIMESTAMP_NAMES, Table, TableError, read_table
from edgewatch.agent.windows import window_labels
from edgewatch.sim.machine import Simulation

SKAB_GROUPS = ("valve1", "valve2", "other")
SKAB_CHANNELS = (
    "Accelerometer1RMS",
    "Accelerometer2RMS",
    "Current",
    "Pressure",
    "Temperature",
    "Thermocouple",
    "Voltage",
    "Volume Flow RateRMS",
)


class DataError(ValueError):
    """Data that cannot be read, with where and why."""


@dataclass(frozen=True)
class Dataset:
    """``samples[n, channels]`` (float64, time order), ``labels[n]`` (0/1) when known, and
    ``times[n]`` in seconds when the source has timestamps."""

    name: str
    channels: tuple[str, ...]
    samples: np.ndarray
    labels: np.ndarray | None
    times: np.ndarray | None
    sha256: str


@dataclass(frozen=True)
class Features:
    """Feature rows and, when the data is labelled, a 0/1 label per row."""

    rows: np.ndarray
    labels: np.ndarray | None


def load_csv(
    path: Path,
    channels: tuple[str, ...] | None = None,
    delimiter: str | None = None,
    timestamp: str | None = None,
    label: str | None = None,
) -> Dataset:
    """A CSV file with a header row (``agent.table``). The timestamp column is ``timestamp``
    or, if not given, the first column named like one (``datetime``, ``time``, ...);
    ``channels`` default to every other column except ``label``."""
    raw = _read(path)
    try:
        table = read_table(path, raw, delimiter)
        header = table.header
        if timestamp is None:
            timestamp = next((h for h in header if h.lower() in TIMESTAMP_NAMES), None)
        named = [n for n in (timestamp, label) if n is not None]
        if channels is None:
            channels = tuple(h for h in header if h not in named)
        for name in (*named, *channels):
            table.index(name)
        if not channels:
            raise DataError(f"{path}: no channel columns")
        samples = np.column_stack([table.numbers(c) for c in channels])
        times = _times(table, timestamp) if timestamp is not None else None
        labels = _labels(table, label) if label is not None else None
    except TableError as e:
        raise DataError(str(e)) from None
    return Dataset(path.name, channels, samples, labels, times, hashlib.sha256(raw).hexdigest())


def _times(table: Table, column: str) -> np.ndarray:
    times = np.array([_seconds(table, r, column, v) for r, v in enumerate(table.values(column))])
    if (np.diff(times) < 0).any():
        r = int(np.argmax(np.diff(times) < 0)) + 1
        raise table.error(r, None, f"{column} goes back in time")
    return times


def _labels(table: Table, column: str) -> np.ndarray:
    labels = table.numbers(column)
    if not np.isin(labels, (0, 1)).all():
        raise table.error(int(np.argmax(~np.isin(labels, (0, 1)))), column, "labels must be 0 or 1")
    return labels.astype(np.int8)


def load_npy(path: Path, channels: tuple[str, ...]) -> Dataset:
    """An ``.npy`` array of samples x channels (one column per name in ``channels``)."""
    raw = _read(path)
    try:
        samples = np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as e:
        raise DataError(f"{path}: not a numeric .npy array ({e})") from None
    if samples.ndim == 1 and len(channels) == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or samples.shape[1] != len(channels):
        raise DataError(
            f"{path}: expected samples x {len(channels)} channels, got shape {list(samples.shape)}"
        )
    if samples.dtype.kind not in "fiu":
        raise DataError(f"{path}: expected numbers, got {samples.dtype}")
    samples = samples.astype(np.float64)
    if not np.isfinite(samples).all():
        r, c = np.argwhere(~np.isfinite(samples))[0]
        raise DataError(f"{path}: sample {r}, channel {channels[c]!r} is NaN or inf")
    return Dataset(path.name, channels, samples, None, None, hashlib.sha256(raw).hexdigest())


def from_simulation(name: str, simulation: Simulation, channels: tuple[str, ...]) -> Dataset:
    """A simulated run, labelled with its injected faults."""
    samples = simulation.rows.astype(np.float64)
    labels = (simulation.labels != 0).astype(np.int8)
    digest = hashlib.sha256(samples.tobytes() + labels.tobytes()).hexdigest()
    return Dataset(name, channels, samples, labels, None, digest)


def load_skab(root: Path) -> list[Dataset]:
    """SKAB's 34 labelled files in a fixed order (valve1, valve2, other; by number), named like
    ``valve1/0.csv``."""
    found = []
    for group in SKAB_GROUPS:
        paths = sorted((root / group).glob("*.csv"), key=lambda p: int(p.stem))
        for path in paths:
            data = load_csv(path, SKAB_CHANNELS, ";", "datetime", "anomaly")
            found.append(replace(data, name=f"{group}/{path.name}"))
    if not found:
        raise DataError(f"{root}: no SKAB files in {', '.join(SKAB_GROUPS)}")
    return found


def features(spec: FeatureSpec, data: Dataset) -> Features:
    """``data`` through the featurizer. A waveform window is labelled anomalous when at least
    half of its samples are."""
    if tuple(data.channels) != spec.channels:
        raise DataError(
            f"{data.name}: channels {list(data.channels)} differ from the feature spec's "
            f"{list(spec.channels)}"
        )
    try:
        rows = recording_features(spec, data.samples)
    except FeatureError as e:
        raise DataError(f"{data.name}: {e}") from None
    labels = data.labels
    if labels is not None and spec.kind == "waveform":
        assert spec.window is not None and spec.hop is not None
        labels = window_labels(labels, spec.window, spec.hop)
    return Features(rows, labels)


def split(n: int, validation: float) -> tuple[slice, slice]:
    """The first rows for training and the last ``validation`` share for validation.

    >>> split(10, 0.3)
    (slice(0, 7, None), slice(7, 10, None))
    """
    cut = n - math.ceil(n * validation)
    if cut < 2 or cut >= n:
        raise DataError(
            f"{n} rows leave {cut} for training and {n - cut} for validation; need 2 and 1"
        )
    return slice(0, cut), slice(cut, n)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: {e.strerror}") from None


def _seconds(table: Table, row: int, column: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.strip()).timestamp()
    except ValueError:
        raise table.error(
            row, column, f"{value!r} is neither seconds nor an ISO 8601 time"
        ) from None
