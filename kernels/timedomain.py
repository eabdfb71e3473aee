"""Time-domain statistics of one channel of one window."""

import numpy as np

from .config import jit
from .layout import FLAT_VARIANCE_RATIO
from .precision import cast_like, ordered_bits, ordered_key


@jit
def min_max(x: np.ndarray) -> tuple[float, float]:
    """The smallest and largest of ``x``, through integer keys that order as the floats do."""
    bits, shift, mask = ordered_bits(x)
    lo = hi = ordered_key(bits[0], shift, mask)
    for i in range(1, bits.size):
        k = ordered_key(bits[i], shift, mask)
        lo = min(lo, k)
        hi = max(hi, k)
    pair = np.empty(2, dtype=bits.dtype)
    pair[0] = ordered_key(lo, shift, mask)
    pair[1] = ordered_key(hi, shift, mask)
    values = pair.view(x.dtype)
    return np.float64(values[0]), np.float64(values[1])


@jit
def time_features(x: np.ndarray, window: np.ndarray, windowed: np.ndarray, out: np.ndarray) -> bool:
    """Write the statistics of ``x`` into ``out[:11]`` in TIME_FEATURES order, and the
    mean-removed signal times ``window`` into ``windowed`` (the spectrum's input).

    Sums run in float64; the centring pass runs in the input's precision about its mean
    rounded to that precision, and the moments are then moved to the exact mean, so float32
    data with a large offset keeps its precision. Skewness is the biased Fisher-Pearson
    coefficient; kurtosis is Pearson's (3 for a Gaussian). Returns False for a flat window.
    """
    n = x.size
    s = 0.0
    s2 = 0.0
    sa = 0.0
    sq = 0.0
    for i in range(n):
        v = x[i]
        a = abs(v)
        v64 = np.float64(v)
        s += v64
        s2 += v64 * v64
        sa += a
        sq += np.sqrt(a)
    lo, hi = min_max(x)
    mean = s / n
    center = cast_like(x, mean)
    e = mean - np.float64(center)
    p2 = 0.0
    p3 = 0.0
    p4 = 0.0
    for i in range(n):
        d = x[i] - center
        windowed[i] = d * window[i]
        d64 = np.float64(d)
        d2 = d64 * d64
        p2 += d2
        p3 += d2 * d64
        p4 += d2 * d2
    p2 /= n
    p3 /= n
    p4 /= n
    e2 = e * e
    m2 = p2 - e2
    m3 = p3 - 3.0 * e * p2 + 2.0 * e2 * e
    m4 = p4 - 4.0 * e * p3 + 6.0 * e2 * p2 - 3.0 * e2 * e2
    ms = s2 / n
    rms = np.sqrt(ms)
    peak = max(abs(lo), abs(hi))
    mean_abs = sa / n
    mean_sqrt = sq / n
    flat = m2 <= FLAT_VARIANCE_RATIO * ms
    out[0] = mean
    out[1] = np.sqrt(max(m2, 0.0))
    out[2] = rms
    out[3] = peak
    out[4] = hi - lo
    out[5] = peak / rms if rms > 0.0 else 0.0
    out[6] = 0.0 if flat else m3 / (m2 * np.sqrt(m2))
    out[7] = 0.0 if flat else m4 / (m2 * m2)
    out[8] = rms / mean_abs if mean_abs > 0.0 else 0.0
    out[9] = peak / mean_abs if mean_abs > 0.0 else 0.0
    out[10] = peak / (mean_sqrt * mean_sqrt) if mean_sqrt > 0.0 else 0.0
    return not flat
