"""Features of whole windows ``[channels, N]``, one at a time or a batch ``[n, channels, N]``.

Which families are computed, and where each lands in a channel's block of the output row, is
the ``layout``: ``[stride, time, spectral, bands, envelope]``, an offset per family or -1 when
the family is off. Families that need no FFT cost none.
"""

import numba
import numpy as np

from .config import jit, jit_parallel
from .envelope import ENVELOPE_FEATURES, envelope_features
from .spectral import SPECTRAL_FEATURES, complex_empty, spectral_features, windowed_spectrum
from .timedomain import TIME_FEATURES, time_features

N_TIME = len(TIME_FEATURES)
N_SPECTRAL = len(SPECTRAL_FEATURES)
N_ENVELOPE = len(ENVELOPE_FEATURES)
STRIDE, TIME, SPECTRAL, BANDS, ENVELOPE = range(5)


@jit
def window_features(
    x: np.ndarray,
    window: np.ndarray,
    sample_rate: float,
    band_lo: np.ndarray,
    band_hi: np.ndarray,
    pass_band: np.ndarray,
    read_bins: np.ndarray,
    layout: np.ndarray,
    out: np.ndarray,
) -> None:
    """Write one window's features into the row ``out``; ``pass_band`` is the envelope's
    ``[lo, hi)`` bins."""
    channels, n = x.shape
    m = n // 2 + 1
    n_bands = band_lo.size
    window_sum = window.sum()
    window_sq_sum = (window * window).sum()
    buf = np.empty(n, dtype=x.dtype)
    spectrum = complex_empty(x, m)
    power = np.empty(m)
    time = np.empty(N_TIME)
    spectral = np.zeros(N_SPECTRAL)
    bands = np.zeros(n_bands)
    envelope = np.zeros(N_ENVELOPE)
    want_spectrum = layout[SPECTRAL] >= 0 or layout[BANDS] >= 0
    want_envelope = layout[ENVELOPE] >= 0
    analytic = complex_empty(x, n if want_envelope else 0)
    for c in range(channels):
        row = x[c]
        base = c * layout[STRIDE]
        varies = time_features(row, time)
        mean = time[0]
        if layout[TIME] >= 0:
            o = base + layout[TIME]
            out[o : o + N_TIME] = time
        if want_spectrum:
            if varies:
                windowed_spectrum(row, mean, window, buf, spectrum)
                spectral_features(
                    spectrum, n, sample_rate, window_sum, window_sq_sum,
                    band_lo, band_hi, power, spectral, bands,
                )
            else:
                spectral[:] = 0.0
                bands[:] = 0.0
            if layout[SPECTRAL] >= 0:
                o = base + layout[SPECTRAL]
                out[o : o + N_SPECTRAL] = spectral
            if layout[BANDS] >= 0:
                o = base + layout[BANDS]
                out[o : o + n_bands] = bands
        if want_envelope:
            if varies:
                envelope_features(
                    row, mean, window, window_sum, pass_band[0], pass_band[1], read_bins,
                    analytic, buf, spectrum, envelope,
                )
            else:
                envelope[:] = 0.0
            o = base + layout[ENVELOPE]
            out[o : o + N_ENVELOPE] = envelope


@jit_parallel
def windows_features(
    windows: np.ndarray,
    window: np.ndarray,
    sample_rate: float,
    band_lo: np.ndarray,
    band_hi: np.ndarray,
    pass_band: np.ndarray,
    read_bins: np.ndarray,
    layout: np.ndarray,
    out: np.ndarray,
) -> None:
    """``window_features`` over ``windows[n, channels, N]`` into ``out[n, F]``, windows in
    parallel."""
    for i in numba.prange(windows.shape[0]):
        window_features(
            windows[i], window, sample_rate, band_lo, band_hi, pass_band, read_bins, layout,
            out[i],
        )
