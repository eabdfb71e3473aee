"""Time-domain statistics of one channel of one window."""

import numpy as np

from .config import jit

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
def time_features(x: np.ndarray, out: np.ndarray) -> bool:
    """Write the statistics of ``x`` into ``out[:11]`` in TIME_FEATURES order.

    Raw sums in one pass, central moments in a second (raw fourth moments cancel badly).
    Returns False for a flat window.
    Skewness is the biased Fisher-Pearson coefficient; kurtosis is Pearson's (3 for a Gaussian).
    """
    n = x.size
    s = 0.0
    s2 = 0.0
    sa = 0.0
    sq = 0.0
    for i in range(n):
        v = np.float64(x[i])
        s += v
        s2 += v * v
        a = abs(v)
        sa += a
        sq += np.sqrt(a)
    lo = x[0]
    hi = x[0]
    for i in range(1, n):
        lo = min(lo, x[i])
        hi = max(hi, x[i])
    mean = s / n
    m2 = 0.0
    m3 = 0.0
    m4 = 0.0
    for i in range(n):
        d = np.float64(x[i]) - mean
        d2 = d * d
        m2 += d2
        m3 += d2 * d
        m4 += d2 * d2
    m2 /= n
    m3 /= n
    m4 /= n
    ms = s2 / n
    rms = np.sqrt(ms)
    peak = max(abs(np.float64(lo)), abs(np.float64(hi)))
    mean_abs = sa / n
    mean_sqrt = sq / n
    flat = m2 <= FLAT_VARIANCE_RATIO * ms
    out[0] = mean
    out[1] = np.sqrt(m2)
    out[2] = rms
    out[3] = peak
    out[4] = np.float64(hi) - np.float64(lo)
    out[5] = peak / rms if rms > 0.0 else 0.0
    out[6] = 0.0 if flat else m3 / (m2 * np.sqrt(m2))
    out[7] = 0.0 if flat else m4 / (m2 * m2)
    out[8] = rms / mean_abs if mean_abs > 0.0 else 0.0
    out[9] = peak / mean_abs if mean_abs > 0.0 else 0.0
    out[10] = peak / (mean_sqrt * mean_sqrt) if mean_sqrt > 0.0 else 0.0
    return not flat
