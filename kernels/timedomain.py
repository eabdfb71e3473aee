"""Time-domain statistics of one channel of one window."""

import numpy as np

from .config import jit
from .precision import cast_like

TIME_FEATURES = (
    "mean",
    "std",
    "rms",
    "peak",
    "peak_to_peak",
    "crest_factor",
    "skewness",
    "kurtosis",
    "shape_factor",
    "impulse_factor",
    "clearance_factor",
)

# A window whose variance is below this share of its mean square is constant for our purposes:
# its higher moments and its spectrum are rounding noise, so they are reported as 0.
FLAT_VARIANCE_RATIO = 1e-20


@jit
def min_max(x: np.ndarray, scratch: np.ndarray) -> tuple[float, float]:
    """The smallest and largest of ``x``, by halving: each level is an elementwise min/max,
    which vectorises where a running reduction that must respect NaN does not.
    ``scratch`` holds at least ``x.size`` values of x's type."""
    n = x.size
    half = n // 2
    if half == 0:
        return np.float64(x[0]), np.float64(x[0])
    lo = scratch[:half]
    hi = scratch[half : 2 * half]
    for i in range(half):
        a = x[i]
        b = x[i + half]
        lo[i] = a if a < b else b
        hi[i] = a if a > b else b
    m = half
    while m > 1:
        h = m // 2
        for i in range(h):
            a = lo[i]
            b = lo[i + h]
            lo[i] = a if a < b else b
            a = hi[i]
            b = hi[i + h]
            hi[i] = a if a > b else b
        if m % 2:
            lo[0] = min(lo[0], lo[m - 1])
            hi[0] = max(hi[0], hi[m - 1])
        m = h
    smallest, largest = lo[0], hi[0]
    if n % 2:
        smallest = min(smallest, x[n - 1])
        largest = max(largest, x[n - 1])
    return np.float64(smallest), np.float64(largest)


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
    lo, hi = min_max(x, windowed)
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
