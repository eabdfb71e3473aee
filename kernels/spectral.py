"""The one-sided spectrum of a Hann-windowed channel and the features read from it."""

import numpy as np

from .config import jit

AXIS = np.zeros(1, dtype=np.int64)
LAST_AXIS = np.ones(1, dtype=np.int64)


@jit
def largest(x: np.ndarray) -> float:
    """The largest of ``x`` (not NaN-aware), by eight independent running maxima: a single
    running maximum waits on itself every element, eight keep the core busy."""
    n = x.size
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = x[0]
    full = n - n % 8
    for i in range(0, full, 8):
        m0 = max(m0, x[i])
        m1 = max(m1, x[i + 1])
        m2 = max(m2, x[i + 2])
        m3 = max(m3, x[i + 3])
        m4 = max(m4, x[i + 4])
        m5 = max(m5, x[i + 5])
        m6 = max(m6, x[i + 6])
        m7 = max(m7, x[i + 7])
    best = max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))
    for i in range(full, n):
        best = max(best, x[i])
    return float(best)


@jit
def spectral_features(
    spectrum: np.ndarray,
    n: int,
    sample_rate: float,
    window_sum: float,
    window_sq_sum: float,
    band_lo: np.ndarray,
    band_hi: np.ndarray,
    power: np.ndarray,
    out: np.ndarray,
    bands: np.ndarray,
) -> None:
    """Spectral shape, the dominant peak and band powers of one channel.

    ``spectrum`` is the rfft (N//2+1 bins, N even) of the mean-removed signal times a Hann
    window; ``power`` (N//2+1 float64) is scratch. Power is scaled to sum to the windowed
    signal's mean square (Parseval), so a band holds the share of the mean square in its bins
    ``band_lo[b] <= k < band_hi[b]``. Amplitude is scaled so that a sine of amplitude A centred
    on a bin reads A. Centroid and spread are in Hz; the spectral kurtosis is the
    fourth standardised moment of frequency under the power distribution.
    """
    m = n // 2 + 1
    scale = 2.0 / (n * window_sq_sum)
    total = 0.0
    first = 0.0
    for k in range(m):
        re = spectrum[k].real
        im = spectrum[k].imag
        p = np.float64(re * re + im * im) * scale
        power[k] = p
        total += p
        first += k * p
    # DC and Nyquist stand for one frequency each, not a positive and a negative one.
    edge = 0.5 * power[m - 1]
    power[0] *= 0.5
    power[m - 1] = edge
    total -= power[0] + edge
    first -= (m - 1) * edge
    for b in range(band_lo.size):
        e = 0.0
        for k in range(band_lo[b], band_hi[b]):
            e += power[k]
        bands[b] = e
    if total <= 0.0:
        out[:5] = 0.0
        return
    best = largest(power[1 : m - 1])
    best_k = 1
    while best_k < m - 2 and power[best_k] != best:
        best_k += 1
    # An interior bin's amplitude squared is twice its power (times a constant); Nyquist's, once.
    peak2 = 2.0 * best
    if power[m - 1] > peak2:
        peak2 = power[m - 1]
        best_k = m - 1
    centroid = first / total
    c2 = 0.0
    c4 = 0.0
    for k in range(m):
        d = k - centroid
        d2 = d * d
        c2 += d2 * power[k]
        c4 += d2 * d2 * power[k]
    c2 /= total
    c4 /= total
    df = sample_rate / n
    out[0] = centroid * df
    out[1] = np.sqrt(c2) * df
    out[2] = c4 / (c2 * c2) if c2 > 0.0 else 0.0
    out[3] = best_k * df
    out[4] = np.sqrt(peak2 * n * window_sq_sum) / window_sum
