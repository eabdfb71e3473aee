"""A recorded file played back as a sensor: at real time, ``speed`` times faster, or flat out.

CSV files need a header naming the channels (other columns, such as a timestamp or a label, are
ignored; the delimiter is one of ``,`` ``;`` or a tab); NPY files hold ``[samples, channels]``.
Blocks of ``BLOCK_S`` of signal are handed over on the schedule of an injectable clock, so tests
play hours of data in no time.
"""

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from edgewatch.agent.clock import Clock, Pacer
from edgewatch.agent.framing import Block
from edgewatch.agent.sources import Offer
from edgewatch.agent.table import TableError, read_table

BLOCK_S = 0.1


class RecordingError(ValueError):
    """A file that cannot be replayed, and why."""


def load_recording(path: Path, channels: Sequence[str]) -> np.ndarray:
    """``[channels, samples]`` float32 from a CSV or NPY file."""
    try:
        if path.suffix == ".npy":
            data = np.load(path, allow_pickle=False)
            if data.ndim != 2 or data.shape[1] != len(channels):
                raise RecordingError(
                    f"{path}: expected [samples, {len(channels)}] for channels "
                    f"{list(channels)}, got {list(data.shape)}"
                )
            rows = data.astype(np.float32)
        else:
            table = read_table(path)
            columns = [table.numbers(c, finite=False) for c in channels]
            rows = np.column_stack(columns).astype(np.float32)
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
    return np.ascontiguousarray(rows.T)


def recording_channels(path: Path) -> tuple[str, ...]:
    """The channels of a recording when nobody names them: a CSV's numeric columns that are
    not times or labels, or an NPY's columns as ``ch0``, ``ch1``, ..."""
    try:
        if path.suffix == ".npy":
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
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
    """Plays ``samples[channels, n]`` as ``device``, from time ``start_ts`` (default: now)."""

    def __init__(
        self,
        samples: np.ndarray,
        device: str,
        channels: Sequence[str],
        sample_rate: float,
        speed: float | Literal["max"],
        offer: Offer,
        clock: Clock | None = None,
        start_ts: float | None = None,
    ) -> None:
        self.samples, self.device, self.channels = samples, device, tuple(channels)
        self.sample_rate, self.speed, self.offer = sample_rate, speed, offer
        self.clock = clock
        self.start_ts = time.time() if start_ts is None else start_ts
        self.block = max(1, round(sample_rate * BLOCK_S))
        self.done = threading.Event()

    def run(self, stop: threading.Event) -> None:
        pacer = Pacer(None if self.speed == "max" else self.speed, self.clock)
        for start in range(0, self.samples.shape[1], self.block):
            if stop.is_set():
                break
            pacer.wait(start / self.sample_rate)
            ts = self.start_ts + start / self.sample_rate
            chunk = self.samples[:, start : start + self.block]
            self.offer(Block(self.device, ts, self.sample_rate, chunk, self.channels))
        self.done.set()
