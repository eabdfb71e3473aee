"""Envelope analysis for rolling-element bearings.

A bearing defect strikes the races at a rate set by the bearing's geometry and the shaft speed;
each strike rings a structural resonance. The spectrum of the signal's envelope (the magnitude
of its analytic signal, optionally band-passed around that resonance) shows the strike rate.
"""

import numpy as np
from rocket_fft import c2c, r2c

from .config import jit
from .spectral import AXIS


@jit
def envelope_features(
    x: np.ndarray,
    mean: float,
    window: np.ndarray,
    window_sum: float,
    pass_lo: int,
    pass_hi: int,
    read_bins: np.ndarray,
    analytic: np.ndarray,
    buf: np.ndarray,
    spectrum: np.ndarray,
    out: np.ndarray,
) -> None:
    """Read the envelope spectrum's amplitude near each of ``read_bins`` into ``out``.

    The analytic signal keeps bins ``pass_lo <= k < pass_hi`` of the mean-removed signal (the
    band-pass), doubled for positive frequencies. Its magnitude, mean removed and Hann-windowed,
    is transformed again; each reading is the largest amplitude within one bin of its target,
    so a shaft speed that drifts by under a bin still reads. ``window`` is the Hann window in
    the precision of ``x``; ``analytic`` holds N complex, ``buf`` N real and ``spectrum``
    N//2+1 complex, all of that precision.
    """
    n = x.size
    m = n // 2 + 1
    for i in range(n):
        buf[i] = x[i] - mean
    r2c(buf, spectrum, AXIS, True, 1.0, 1)
    analytic[:] = 0.0
    for k in range(max(pass_lo, 0), min(pass_hi, m)):
        edge = k == 0 or 2 * k == n
        analytic[k] = spectrum[k] if edge else 2.0 * spectrum[k]
    c2c(analytic, analytic, AXIS, False, 1.0 / n, 1)
    env_mean = 0.0
    for i in range(n):
        v = abs(analytic[i])
        buf[i] = v
        env_mean += v
    env_mean /= n
    for i in range(n):
        buf[i] = (buf[i] - env_mean) * window[i]
    r2c(buf, spectrum, AXIS, True, 1.0, 1)
    for j in range(read_bins.size):
        k0 = read_bins[j]
        best = 0.0
        for k in range(max(k0 - 1, 1), min(k0 + 2, m)):
            a = abs(spectrum[k]) if 2 * k == n else 2.0 * abs(spectrum[k])
            best = max(best, a)
        out[j] = best / window_sum
