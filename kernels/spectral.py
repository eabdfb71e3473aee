"""The one-sided spectrum of a Hann-windowed channel and the features read from it."""

import numpy as np
from numba.extending import overload
from rocket_fft import r2c

from .config import jit

SPECTRAL_FEATURES = (
    "spectral_centroid",
    "spectral_spread",
    "spectral_kurtosis",
    "dominant_freq",
    "dominant_amp",
)

_AXIS = np.zeros(1, dtype=np.int64)


def hann(n: int) -> np.ndarray:
    """The periodic Hann window, as used for spectral analysis (``scipy.signal.get_window``).

    >>> hann(4).tolist()
    [0.0, 0.5, 1.0, 0.5]
    """
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def complex_empty(x: np.ndarray, n: int) -> np.ndarray:
    """An empty complex array of the precision of ``x`` (complex64 for float32)."""
    return np.empty(n, dtype=np.result_type(x.dtype, np.complex64))


@overload(complex_empty)
def _complex_empty(x, n):  # type: ignore[no-untyped-def]
    dtype = np.complex64 if x.dtype.bitwidth == 32 else np.complex128
    return lambda x, n: np.empty(n, dtype=dtype)


@jit
def windowed_spectrum(
    x: np.ndarray, mean: float, window: np.ndarray, buf: np.ndarray, spectrum: np.ndarray
) -> None:
    """``spectrum[:N//2+1]`` = rfft((x - mean) * window), computed in the precision of ``buf``."""
    for i in range(x.size):
        buf[i] = (np.float64(x[i]) - mean) * window[i]
    r2c(buf, spectrum, _AXIS, True, 1.0, 1)


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
    """Spectral shape, the dominant peak and band powers of an rfft of a Hann-windowed window.

    Power is scaled so that it sums to the windowed signal's mean square (Parseval), so a band
    holds the share of the mean square between its edges: bins ``band_lo[b] <= k < band_hi[b]``.
    Amplitude is scaled so that a sine of amplitude A centred on a bin reads A. Centroid and
    spread are in Hz; the spectral kurtosis is the fourth standardised moment of frequency
    under the power distribution. ``power`` is scratch of N//2+1 float64.
    """
    m = n // 2 + 1
    df = sample_rate / n
    p_scale = 1.0 / (n * window_sq_sum)
    total = 0.0
    first = 0.0
    best = -1.0
    best_k = 1
    for k in range(m):
        re = np.float64(spectrum[k].real)
        im = np.float64(spectrum[k].imag)
        mag2 = re * re + im * im
        edge = k == 0 or 2 * k == n
        p = mag2 * p_scale if edge else 2.0 * mag2 * p_scale
        power[k] = p
        total += p
        first += k * p
        a = mag2 if edge else 4.0 * mag2
        if k > 0 and a > best:
            best = a
            best_k = k
    for b in range(band_lo.size):
        e = 0.0
        for k in range(band_lo[b], band_hi[b]):
            e += power[k]
        bands[b] = e
    if total <= 0.0:
        out[:5] = 0.0
        return
    centroid_bin = first / total
    c2 = 0.0
    c4 = 0.0
    for k in range(m):
        d = k - centroid_bin
        d2 = d * d
        c2 += d2 * power[k]
        c4 += d2 * d2 * power[k]
    c2 /= total
    c4 /= total
    out[0] = centroid_bin * df
    out[1] = np.sqrt(c2) * df
    out[2] = c4 / (c2 * c2) if c2 > 0.0 else 0.0
    out[3] = best_k * df
    out[4] = np.sqrt(best) / window_sum
