"""Streaming statistics of slow process signals, fed row by row as rows arrive.

Over the last ``history`` rows (fewer while the history fills), per channel: the mean and
standard deviation (a sliding Welford update), the z-score of the newest value against them,
the first difference, and an exponentially weighted moving average. The state is a handful of
arrays the caller keeps, so a stream fed in any chunking gives the same features.

A sum of squared deviations no larger than the rounding error the sliding update can have made
(bounded from the magnitudes it added since the last exact recompute) is taken as zero: a stuck
sensor reads a standard deviation and z-score of exactly 0, not noise that would raise alarms.
"""

import numpy as np

from .config import jit_ordered
from .layout import ROLLING_FEATURES

_WIDTH = len(ROLLING_FEATURES)
_EPS = float(np.finfo(np.float64).eps)


@jit_ordered
def _reanchor(
    history: np.ndarray,
    c: int,
    newest: float,
    shift: np.ndarray,
    mean: np.ndarray,
    m2: np.ndarray,
    m2_added: np.ndarray,
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
    for i in range(h):
        d = history[i, c] - newest - mu
        acc += d * d
    shift[c] = newest
    mean[c] = mu
    m2[c] = acc
    m2_added[c] = acc


@jit_ordered
def rolling_features(
    rows: np.ndarray,
    alpha: float,
    history: np.ndarray,
    counters: np.ndarray,
    shift: np.ndarray,
    mean: np.ndarray,
    m2: np.ndarray,
    m2_added: np.ndarray,
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
                step = delta * (y - mean[c])
                m2[c] += step
                m2_added[c] += abs(step)
            else:
                count = h
                old = history[pos, c] - shift[c]
                new_mean = mean[c] + (y - old) / h
                step = (y - old) * (y - new_mean + old - mean[c])
                m2[c] += step
                m2_added[c] += abs(step)
                mean[c] = new_mean
            history[pos, c] = x
            flat = m2[c] <= (h + 8) * _EPS * m2_added[c]
            std = 0.0 if flat else np.sqrt(m2[c] / count)
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
                _reanchor(history, c, np.float64(rows[r, c]), shift, mean, m2, m2_added)
