"""Streaming statistics of slow process signals, fed row by row as rows arrive.

Over the last ``history`` rows (fewer while the history fills), per channel: the mean and
standard deviation (a sliding Welford update), the z-score of the newest value against them,
the first difference, and an exponentially weighted moving average. The state is a handful of
arrays the caller keeps, so a stream fed in any chunking gives the same features.

A variance below FLAT_VARIANCE_RATIO of the history's mean square (about its anchor) is rounding
left by the sliding update, not signal: a stuck sensor reads a standard deviation and z-score of
exactly 0 rather than noise that would raise alarms.
"""

from typing import NamedTuple

import numpy as np

from .config import jit

ROLLING_FEATURES = ("value", "roll_mean", "roll_std", "zscore", "diff", "ewma")
_WIDTH = len(ROLLING_FEATURES)
FLAT_VARIANCE_RATIO = 1e-12


class RollingState(NamedTuple):
    """Everything the rolling kernel carries from one call to the next."""

    history: np.ndarray  # [history, channels], a ring of the last rows
    counters: np.ndarray  # [rows seen, ring position]
    shift: np.ndarray  # per channel: a recent value the moments are taken about
    mean: np.ndarray  # per channel: mean of (value - shift) over the ring
    m2: np.ndarray  # per channel: sum of squared deviations over the ring
    sumsq: np.ndarray  # per channel: sum of (value - shift)**2 over the ring
    ewma: np.ndarray
    previous: np.ndarray

    @classmethod
    def empty(cls, history: int, channels: int) -> "RollingState":
        """A state that has seen no rows."""
        zeros = np.zeros(channels)
        return cls(
            np.zeros((history, channels)),
            np.zeros(2, dtype=np.int64),
            zeros.copy(),
            zeros.copy(),
            zeros.copy(),
            zeros.copy(),
            zeros.copy(),
            zeros.copy(),
        )


@jit
def _reanchor(
    history: np.ndarray,
    c: int,
    newest: float,
    shift: np.ndarray,
    mean: np.ndarray,
    m2: np.ndarray,
    sumsq: np.ndarray,
) -> None:
    """Recompute channel ``c``'s moments exactly, about its newest value.

    Taking moments about a value near the data keeps the sliding update from cancelling when
    the variance is small beside the mean, and recomputing once per ring turn stops rounding
    error from accumulating over a long stream.
    """
    h = history.shape[0]
    s = 0.0
    for i in range(h):
        s += history[i, c] - newest
    mu = s / h
    acc = 0.0
    sq = 0.0
    for i in range(h):
        y = history[i, c] - newest
        d = y - mu
        acc += d * d
        sq += y * y
    shift[c] = newest
    mean[c] = mu
    m2[c] = acc
    sumsq[c] = sq


@jit
def rolling_features(
    rows: np.ndarray,
    alpha: float,
    history: np.ndarray,
    counters: np.ndarray,
    shift: np.ndarray,
    mean: np.ndarray,
    m2: np.ndarray,
    sumsq: np.ndarray,
    ewma: np.ndarray,
    previous: np.ndarray,
    out: np.ndarray,
) -> None:
    """Feed ``rows[n, channels]``; write ``out[n, channels * 6]`` in ROLLING_FEATURES order."""
    h = history.shape[0]
    channels = rows.shape[1]
    for r in range(rows.shape[0]):
        seen = counters[0]
        pos = counters[1]
        for c in range(channels):
            x = np.float64(rows[r, c])
            if seen == 0:
                shift[c] = x
                ewma[c] = x
                previous[c] = x
            else:
                ewma[c] = alpha * x + (1.0 - alpha) * ewma[c]
            y = x - shift[c]
            if seen < h:
                count = seen + 1
                delta = y - mean[c]
                mean[c] += delta / count
                m2[c] += delta * (y - mean[c])
                sumsq[c] += y * y
            else:
                count = h
                old = history[pos, c] - shift[c]
                new_mean = mean[c] + (y - old) / h
                m2[c] += (y - old) * (y - new_mean + old - mean[c])
                mean[c] = new_mean
                sumsq[c] += y * y - old * old
            history[pos, c] = x
            var = m2[c] / count
            if var <= FLAT_VARIANCE_RATIO * sumsq[c] / count:
                var = 0.0
            std = np.sqrt(var)
            mu = mean[c] + shift[c]
            o = c * _WIDTH
            out[r, o] = x
            out[r, o + 1] = mu
            out[r, o + 2] = std
            out[r, o + 3] = (y - mean[c]) / std if std > 0.0 else 0.0
            out[r, o + 4] = x - previous[c]
            out[r, o + 5] = ewma[c]
            previous[c] = x
        pos = (pos + 1) % h
        counters[0] = seen + 1
        counters[1] = pos
        if pos == 0:
            for c in range(channels):
                _reanchor(history, c, np.float64(rows[r, c]), shift, mean, m2, sumsq)
