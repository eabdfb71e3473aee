"""Cutting signals into the windows the featurizer reads."""

import numpy as np


def frame(signal: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Windows ``[n, ..., window]`` of ``signal[..., samples]``, starting every ``hop`` samples,
    in a new array.

    A tail shorter than a window is left out.

    >>> frame(np.arange(7), 4, 2).tolist()
    [[0, 1, 2, 3], [2, 3, 4, 5]]
    """
    if window < 1 or hop < 1:
        raise ValueError(f"window and hop must be positive, got {window} and {hop}")
    if signal.shape[-1] < window:
        return np.empty((0, *signal.shape[:-1], window), dtype=signal.dtype)
    views = np.lib.stride_tricks.sliding_window_view(signal, window, axis=-1)[..., ::hop, :]
    return np.moveaxis(views, -2, 0).copy()  # a copy even where a view would be contiguous


def window_labels(labels: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Each window's label, as ``frame`` cuts the windows: the nonzero label that covers at
    least half of it, else 0.

    >>> window_labels(np.array([0, 0, 1, 1, 1, 2, 2, 2]), 4, 2).tolist()
    [1, 1, 2]
    """
    framed = frame(labels, window, hop)
    out = np.zeros(len(framed), dtype=labels.dtype)
    for value in np.unique(labels[labels != 0]):
        out[(framed == value).sum(axis=1) * 2 >= window] = value
    return out


class Windower:
    """Windows of one device's waveform, cut as its blocks arrive.

    Blocks must continue each other in time: a block that starts more than ``max_gap_s`` away
    from where the last one ended (or that changes the channel count or the sample rate) starts
    the windows afresh instead of stitching unrelated samples together, and is counted in
    ``restarts``. Windows and their start times come out in order, ``[k, channels, window]``.
    """

    def __init__(self, window: int, hop: int, max_gap_s: float | None = None) -> None:
        if window < 1 or hop < 1 or hop > window:
            raise ValueError(f"need 1 <= hop <= window, got window {window} and hop {hop}")
        self.window, self.hop = window, hop
        self.max_gap_s = max_gap_s
        self.restarts = 0
        self._data = np.empty((0, 0), dtype=np.float32)
        self._start = self._end = 0
        self._t0 = 0.0
        self._rate = 0.0
        self._next_ts: float | None = None

    def push(
        self, ts: float, sample_rate: float, samples: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Add ``samples[channels, n]`` starting at ``ts``; returns the start times and the
        windows completed."""
        channels, n = samples.shape
        if self._continues(ts, sample_rate, channels):
            self._append(samples)
        else:
            if self._next_ts is not None:
                self.restarts += 1
            self._reset(ts, sample_rate, samples)
        self._next_ts = ts + n / sample_rate
        return self._windows()

    def _continues(self, ts: float, sample_rate: float, channels: int) -> bool:
        if self._next_ts is None or sample_rate != self._rate or channels != self._data.shape[0]:
            return False
        allowed = self.max_gap_s if self.max_gap_s is not None else self.window / self._rate / 4
        return abs(ts - self._next_ts) <= allowed

    def _reset(self, ts: float, sample_rate: float, samples: np.ndarray) -> None:
        channels, n = samples.shape
        self._data = np.empty((channels, 8 * self.window + 2 * n), dtype=np.float32)
        self._data[:, :n] = samples
        self._start, self._end = 0, n
        self._t0, self._rate = ts, sample_rate

    def _append(self, samples: np.ndarray) -> None:
        n = samples.shape[1]
        if self._end + n > self._data.shape[1]:
            kept = self._end - self._start
            if kept + n > self._data.shape[1] // 2:
                data = np.empty((self._data.shape[0], 2 * (kept + n)), dtype=np.float32)
                data[:, :kept] = self._data[:, self._start : self._end]
                self._data = data
            else:
                # Windows handed out are copies, so the buffer can be compacted in place.
                self._data[:, :kept] = self._data[:, self._start : self._end]
            self._t0 += self._start / self._rate
            self._start, self._end = 0, kept
        self._data[:, self._end : self._end + n] = samples
        self._end += n

    def _windows(self) -> tuple[np.ndarray, np.ndarray]:
        ready = self._end - self._start
        if ready < self.window:
            return np.empty(0), np.empty((0, self._data.shape[0], self.window), np.float32)
        k = (ready - self.window) // self.hop + 1
        start = self._start
        if k == 1:
            # The steady state when blocks are a hop long: no strided view to build.
            windows = self._data[None, :, start : start + self.window].copy()
            starts = np.array([self._t0 + start / self._rate])
        else:
            channel_stride, sample_stride = self._data.strides
            # Built directly: sliding_window_view's checks cost more than the copy.
            windows = np.lib.stride_tricks.as_strided(
                self._data[:, start:],
                (k, self._data.shape[0], self.window),
                (self.hop * sample_stride, channel_stride, sample_stride),
                writeable=False,
            ).copy()
            starts = self._t0 + (start + self.hop * np.arange(k)) / self._rate
        self._start += k * self.hop
        return starts, windows
