"""Historical data for training: CSV and NPY files, SKAB, the simulator; and their features.

Every dataset is samples ``[n, channels]`` in time order with optional 0/1 labels per sample.
Features always come from ``agent.features``, the featurizer the gateway runs, and splits keep
time order.
"""

import hashlib
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgewatch.agent.features import FeatureError, FeatureSpec
from edgewatch.agent.featurizer import recording_features
from edgewatch.agent.table import Table, TableError, TimeOrder, read_npy, read_table
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
    columns: tuple[str, ...] | None = None,
    time_order: TimeOrder = "error",
) -> Dataset:
    """A CSV file with a header row (``agent.table``). The timestamp column is ``timestamp``
    or, if not given, the first column named like one (``datetime``, ``time``, ...); rows
    whose time goes back follow ``time_order``. The ``columns`` read become the ``channels``,
    in order (by default the channels name their columns, and they are every column but the
    timestamp and ``label``)."""
    raw = _read(path)
    try:
        table = read_table(path, raw, delimiter)
        if timestamp is None:
            timestamp = table.timestamp()
        named = [n for n in (timestamp, label) if n is not None]
        if channels is None:
            channels = tuple(h for h in (columns or table.header) if h not in named)
        columns = columns or channels
        if len(columns) != len(channels):
            raise DataError(f"{path}: {len(columns)} columns for {len(channels)} channels")
        for name in (*named, *columns):
            table.index(name)
        if not channels:
            raise DataError(f"{path}: no channel columns")
        rows, times = np.arange(len(table.rows)), None
        if timestamp is not None:
            rows, times = table.in_time_order(timestamp, time_order)
        samples = np.column_stack([table.numbers(c) for c in columns])[rows]
        labels = _labels(table, label)[rows] if label is not None else None
    except TableError as e:
        raise DataError(str(e)) from None
    return Dataset(path.name, channels, samples, labels, times, hashlib.sha256(raw).hexdigest())


def _labels(table: Table, column: str) -> np.ndarray:
    labels = table.numbers(column)
    if not np.isin(labels, (0, 1)).all():
        raise table.error(int(np.argmax(~np.isin(labels, (0, 1)))), column, "labels must be 0 or 1")
    return labels.astype(np.int8)


def load_npy(
    path: Path, channels: tuple[str, ...], columns: tuple[int, ...] | None = None
) -> Dataset:
    """An ``.npy`` array of samples x columns; the ``columns`` (indices, by default all of
    them) become the ``channels``, in order."""
    raw = _read(path)
    try:
        samples = read_npy(raw)
    except ValueError as e:
        raise DataError(f"{path}: {e}") from None
    if samples.ndim == 1 and len(channels) == 1:
        samples = samples[:, None]
    if columns is not None:
        width = samples.shape[1] if samples.ndim == 2 else 0
        if not all(-width <= c < width for c in columns):
            raise DataError(f"{path}: columns {list(columns)}, and it has {width}")
        samples = samples[:, list(columns)]
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


def rows_of(data: Dataset, rows: tuple[int, int] | None) -> Dataset:
    """``data`` cut to rows ``[start, end)``, when a range is given."""
    if rows is None:
        return data
    start, end = rows
    if start >= len(data.samples):
        raise DataError(f"{data.name}: rows from {start}, and it has {len(data.samples)}")
    cut = slice(start, end)
    return replace(
        data,
        samples=data.samples[cut],
        labels=None if data.labels is None else data.labels[cut],
        times=None if data.times is None else data.times[cut],
    )


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
