"""Features of whole windows ``[channels, N]``, one at a time or a batch ``[n, channels, N]``.

What to compute is a ``plan``, one int64 array (see ``layout.make_plan``): where each family
lands in a channel's block of the output row (-1 when it is off), the band and envelope bins.
Families that need no FFT cost none. ``window`` is the Hann window in the precision of the samples,
which sets the precision of every pass over them.
"""

import numba
import numpy as np
from rocket_fft import r2c

from .config import jit, jit_parallel
from .envelope import envelope_features
from .layout import (
    BANDS,
    ENVELOPE,
    HEAD,
    N_BANDS,
    N_ENVELOPE,
    N_READ,
    N_SPECTRAL,
    N_TIME,
    PASS_HI,
    PASS_LO,
    SPECTRAL,
    STRIDE,
    TIME,
)
from .precision import complex_empty
from .spectral import LAST_AXIS, spectral_features
from .timedomain import time_features


@jit
def window_features(
    windows: np.ndarray,
    i: int,
    window: np.ndarray,
    window_sum: float,
    window_sq_sum: float,
    sample_rate: float,
    plan: np.ndarray,
    features: np.ndarray,
) -> bool:
    """Write the features of ``windows[i]`` into ``features[i]``. Returns whether every feature
    is finite."""
    x = windows[i]
    out = features[i]
    channels, n = x.shape
    m = n // 2 + 1
    n_bands = plan[N_BANDS]
    band_lo = plan[HEAD : HEAD + n_bands]
    band_hi = plan[HEAD + n_bands : HEAD + 2 * n_bands]
    read_bins = plan[HEAD + 2 * n_bands : HEAD + 2 * n_bands + plan[N_READ]]
    want_spectrum = plan[SPECTRAL] >= 0 or plan[BANDS] >= 0
    want_envelope = plan[ENVELOPE] >= 0
    windowed = np.empty((channels, n), dtype=x.dtype)
    spectra = complex_empty(x, channels * m).reshape((channels, m))
    work = np.empty(m + channels * N_TIME + N_SPECTRAL + n_bands + N_ENVELOPE)
    power = work[:m]
    times = work[m : m + channels * N_TIME].reshape((channels, N_TIME))
    spectral = work[m + channels * N_TIME : m + channels * N_TIME + N_SPECTRAL]
    bands = work[m + channels * N_TIME + N_SPECTRAL : m + channels * N_TIME + N_SPECTRAL + n_bands]
    envelope = work[m + channels * N_TIME + N_SPECTRAL + n_bands :]
    varies = np.empty(channels, dtype=np.bool_)
    for c in range(channels):
        varies[c] = time_features(x[c], window, windowed[c], times[c])
        if plan[TIME] >= 0:
            o = c * plan[STRIDE] + plan[TIME]
            out[o : o + N_TIME] = times[c]
    if want_spectrum:
        r2c(windowed, spectra, LAST_AXIS, True, 1.0, 1)
        for c in range(channels):
            if varies[c]:
                spectral_features(
                    spectra[c],
                    n,
                    sample_rate,
                    window_sum,
                    window_sq_sum,
                    band_lo,
                    band_hi,
                    power,
                    spectral,
                    bands,
                )
            else:
                spectral[:] = 0.0
                bands[:] = 0.0
            base = c * plan[STRIDE]
            if plan[SPECTRAL] >= 0:
                o = base + plan[SPECTRAL]
                out[o : o + N_SPECTRAL] = spectral
            if plan[BANDS] >= 0:
                o = base + plan[BANDS]
                out[o : o + n_bands] = bands
    if want_envelope:
        analytic = complex_empty(x, n)
        for c in range(channels):
            if varies[c]:
                envelope_features(
                    x[c],
                    times[c, 0],
                    window,
                    window_sum,
                    plan[PASS_LO],
                    plan[PASS_HI],
                    read_bins,
                    analytic,
                    windowed[c],
                    spectra[c],
                    envelope,
                )
            else:
                envelope[:] = 0.0
            o = c * plan[STRIDE] + plan[ENVELOPE]
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
    plan: np.ndarray,
    out: np.ndarray,
) -> bool:
    """``window_features`` over ``windows[n, channels, N]`` into ``out[n, F]``, windows in
    parallel. Returns whether every feature is finite."""
    count = windows.shape[0]
    finite = np.empty(count, dtype=np.bool_)
    for i in numba.prange(count):
        finite[i] = window_features(
            windows, i, window, window_sum, window_sq_sum, sample_rate, plan, out
        )
    return bool(finite.all())
