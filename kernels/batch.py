"""Features of whole windows ``[channels, N]``, one at a time or a batch ``[n, channels, N]``.

Which families are computed, and where each lands in a channel's block of the output row, is
the ``layout``: ``[stride, time, spectral, bands, envelope]``, an offset per family or -1 when
the family is off. Families that need no FFT cost none. ``window`` is the Hann window in the
precision of the samples, which sets the precision of every pass over them.
"""

import numba
import numpy as np

from .config import jit, jit_parallel
from .envelope import ENVELOPE_FEATURES, envelope_features
from .precision import complex_empty
from .spectral import SPECTRAL_FEATURES, spectral_features
from .timedomain import TIME_FEATURES, time_features

N_TIME = len(TIME_FEATURES)
N_SPECTRAL = len(SPECTRAL_FEATURES)
N_ENVELOPE = len(ENVELOPE_FEATURES)
STRIDE, TIME, SPECTRAL, BANDS, ENVELOPE = range(5)


@jit
def window_features(
    x: np.ndarray,
    window: np.ndarray,
    window_sum: float,
    window_sq_sum: float,
    sample_rate: float,
    band_lo: np.ndarray,
    band_hi: np.ndarray,
    pass_band: np.ndarray,
    read_bins: np.ndarray,
    layout: np.ndarray,
    out: np.ndarray,
) -> bool:
    """Write one window's features into the row ``out``; ``pass_band`` is the envelope's
    ``[lo, hi)`` bins. Returns whether every feature is finite."""
    channels, n = x.shape
    m = n // 2 + 1
    n_bands = band_lo.size
    want_spectrum = layout[SPECTRAL] >= 0 or layout[BANDS] >= 0
    want_envelope = layout[ENVELOPE] >= 0
    buf = np.empty(n, dtype=x.dtype)
    spectra = complex_empty(x, m + n if want_envelope else m)
    spectrum = spectra[:m]
    analytic = spectra[m:]
    work = np.zeros(m + N_TIME + N_SPECTRAL + n_bands + N_ENVELOPE)
    power = work[:m]
    time = work[m : m + N_TIME]
    spectral = work[m + N_TIME : m + N_TIME + N_SPECTRAL]
    bands = work[m + N_TIME + N_SPECTRAL : m + N_TIME + N_SPECTRAL + n_bands]
    envelope = work[m + N_TIME + N_SPECTRAL + n_bands :]
    for c in range(channels):
        row = x[c]
        base = c * layout[STRIDE]
        varies = time_features(row, window, buf, time)
        if layout[TIME] >= 0:
            o = base + layout[TIME]
            out[o : o + N_TIME] = time
        if want_spectrum:
            if varies:
                spectral_features(
                    buf, sample_rate, window_sum, window_sq_sum, band_lo, band_hi,
                    spectrum, power, spectral, bands,
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
                    row, time[0], window, window_sum, pass_band[0], pass_band[1], read_bins,
                    analytic, buf, spectrum, envelope,
                )
            else:
                envelope[:] = 0.0
            o = base + layout[ENVELOPE]
            out[o : o + N_ENVELOPE] = envelope
    finite = True
    for j in range(out.size):
        finite &= np.isfinite(out[j])
    return finite


@jit_parallel
def windows_features(
    windows: np.ndarray,
    window: np.ndarray,
    window_sum: float,
    window_sq_sum: float,
    sample_rate: float,
    band_lo: np.ndarray,
    band_hi: np.ndarray,
    pass_band: np.ndarray,
    read_bins: np.ndarray,
    layout: np.ndarray,
    out: np.ndarray,
) -> bool:
    """``window_features`` over ``windows[n, channels, N]`` into ``out[n, F]``, windows in
    parallel. Returns whether every feature is finite."""
    count = windows.shape[0]
    finite = np.empty(count, dtype=np.bool_)
    for i in numba.prange(count):
        finite[i] = window_features(
            windows[i], window, window_sum, window_sq_sum, sample_rate, band_lo, band_hi,
            pass_band, read_bins, layout, out[i],
        )
    return bool(finite.all())
