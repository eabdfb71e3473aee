"""A recorded file played back as a sensor: at real time, ``speed`` times faster, or flat out.

CSV files need a header naming the channels (other columns, such as a label, are ignored; the
delimiter is one of ``,`` ``;`` or a tab); NPY files hold ``[samples, channels]``. A CSV file's
timestamp column (the first named like one: ``timestamp``, ``time``, ...; seconds or ISO 8601)
times its rows, gaps and all, unless told to space them evenly at the sample rate; a time that
goes back refuses the file, or is sorted, or its row dropped (``time_order``). Blocks of
``BLOCK_S`` of signal, cut at every gap, are handed over on the schedule of an injectable clock,
so tests play hours of data in no time.
"""

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from edgewatch.agent.clock import Clock, Pacer
from edgewatch.agent.framing import Block
from edgewatch.agent.sources import Offer
from edgewatch.agent.table import TableError, TimeOrder, read_npy, read_table

BLOCK_S = 0.1


class RecordingError(ValueError):
    """A file that cannot be replayed, and why."""


@dataclass(frozen=True)
class Recording:
    """``samples[channels, n]`` float32, and each sample's time in seconds when the file
    has them."""

    samples: np.ndarray
    times: np.ndarray | None = None

    def cut(self, start: int, end: int) -> "Recording":
        """Samples ``[start, end)``; ``RecordingError`` when none are left."""
        if start >= self.samples.shape[1]:
            raise RecordingError(f"rows from {start}, and it has {self.samples.shape[1]}")
        times = None if self.times is None else self.times[start:end]
        return Recording(self.samples[:, start:end], times)


def load_recording(
    path: Path, channels: Sequence[str], timestamps: bool = True, time_order: TimeOrder = "error"
) -> Recording:
    """The ``channels`` of a CSV or NPY file, with its times when ``timestamps`` is set and it
    has a timestamp column."""
    times = None
    try:
        if path.suffix == ".npy":
            data = read_npy(path.read_bytes())
            if data.ndim != 2 or data.shape[1] != len(channels):
                raise RecordingError(
                    f"{path}: expected [samples, {len(channels)}] for channels "
                    f"{list(channels)}, got {list(data.shape)}"
                )
            rows = data.astype(np.float32)
        else:
            table = read_table(path)
            order = np.arange(len(table.rows))
            column = table.timestamp() if timestamps else None
            if column is not None:
                order, times = table.in_time_order(column, time_order)
            columns = [table.numbers(c, finite=False) for c in channels]
            rows = np.column_stack(columns).astype(np.float32)[order]
    except TableError as e:
        raise RecordingError(str(e)) from None
    except OSError as e:
        raise RecordingError(f"{path}: {e.strerror}") from None
    except ValueError as e:
        if isinstance(e, RecordingError):
            raise
        raise RecordingError(f"{path}: {e}") from None
    if not len(rows):
        raise RecordingError(f"{path}: no samples")
    if not np.isfinite(rows).all():
        raise RecordingError(
            f"{path}: row {int(np.argwhere(~np.isfinite(rows))[0, 0])}: NaN or inf"
        )
    return Recording(np.ascontiguousarray(rows.T), times)


def recording_channels(path: Path) -> tuple[str, ...]:
    """The channels of a recording when nobody names them: a CSV's numeric columns that are
    not times or labels, or an NPY's columns as ``ch0``, ``ch1``, ..."""
    try:
        if path.suffix == ".npy":
            shape = read_npy(path.read_bytes()).shape
            if len(shape) != 2:
                raise RecordingError(f"{path}: expected [samples, channels], got {list(shape)}")
            return tuple(f"ch{i}" for i in range(shape[1]))
        found = read_table(path).channels()
    except TableError as e:
        raise RecordingError(str(e)) from None
    except OSError as e:
        raise RecordingError(f"{path}: {e.strerror}") from None
    except ValueError as e:
        raise RecordingError(f"{path}: {e}") from None
    if not found:
        raise RecordingError(f"{path}: no column holds numbers in every row; name the channels")
    return tuple(found)


class ReplayReader:
    """Plays ``recording`` as ``device``. Its samples are timed by the recording's times, moved
    to start at ``start_ts`` if given; or, without times, spaced at ``sample_rate`` from
    ``start_ts`` (default: now)."""

    def __init__(
        self,
        recording: Recording,
        device: str,
        channels: Sequence[str],
        sample_rate: float,
        speed: float | Literal["max"],
        offer: Offer,
        clock: Clock | None = None,
        start_ts: float | None = None,
    ) -> None:
        self.samples, self.device, self.channels = recording.samples, device, tuple(channels)
        self.sample_rate, self.speed, self.offer = sample_rate, speed, offer
        self.clock = clock
        times = recording.times
        if times is None:
            first = time.time() if start_ts is None else start_ts
            times = first + np.arange(self.samples.shape[1]) / sample_rate
        elif start_ts is not None:
            times = times - times[0] + start_ts
        self.times = times
        self.block = max(1, round(sample_rate * BLOCK_S))
        self.done = threading.Event()

    def blocks(self) -> list[tuple[int, int]]:
        """``[start, end)`` of each block: ``BLOCK_S`` of samples at most, cut wherever the
        time between two samples is not one sample period (a gap, or a rate of its own).

        >>> times = np.array([0, 0.01, 0.02, 1, 1.01, 1.02])
        >>> rec = Recording(np.zeros((1, 6), np.float32), times)
        >>> ReplayReader(rec, "d", ["x"], 100.0, "max", print).blocks()
        [(0, 3), (3, 6)]
        """
        period = 1.0 / self.sample_rate
        gaps = np.flatnonzero(np.abs(np.diff(self.times) - period) > 0.5 * period) + 1
        cuts = sorted({*range(0, self.samples.shape[1], self.block), *gaps.tolist()})
        return list(zip(cuts, [*cuts[1:], self.samples.shape[1]], strict=True))

    def run(self, stop: threading.Event) -> None:
        pacer = Pacer(None if self.speed == "max" else self.speed, self.clock)
        first = float(self.times[0])
        for start, end in self.blocks():
            if stop.is_set():
                break
            pacer.wait(float(self.times[start]) - first)
            chunk = self.samples[:, start:end]
            block = Block(
                self.device, float(self.times[start]), self.sample_rate, chunk, self.channels
            )
            self.offer(block)
        self.done.set()
