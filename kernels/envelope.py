"""Envelope analysis for rolling-element bearings.

A bearing defect strikes the races at a rate set by the bearing's geometry and the shaft speed;
each strike rings a structural resonance. The spectrum of the signal's envelope (the magnitude
of its analytic signal, optionally band-passed around that resonance) shows the strike rate.
"""

import math

import numpy as np
from rocket_fft import c2c, r2c

from .config import jit
from .spectral import AXIS

DEFECTS = ("bpfo", "bpfi", "bsf", "ftf")
ENVELOPE_FEATURES = tuple(f"env_{d}" for d in DEFECTS) + tuple(f"env_{d}_2x" for d in DEFECTS)


def bearing_frequencies(
    shaft_hz: float,
    balls: int,
    ball_diameter: float,
    pitch_diameter: float,
    contact_angle_deg: float = 0.0,
) -> tuple[float, float, float, float]:
    """Defect frequencies in Hz, in DEFECTS order: outer race, inner race, ball spin, cage.

    BSF is the ball's spin frequency; a ball defect that strikes both races shows at 2x BSF,
    which the envelope features also read.

    SKF 6205 (the CWRU test bearing) at 1797 rpm:

    >>> [round(f, 2) for f in bearing_frequencies(1797 / 60, 9, 7.94, 39.04)]
    [107.36, 162.19, 70.58, 11.93]
    """
    ratio = ball_diameter / pitch_diameter * math.cos(math.radians(contact_angle_deg))
    bpfo = balls / 2.0 * shaft_hz * (1.0 - ratio)
    bpfi = balls / 2.0 * shaft_hz * (1.0 + ratio)
    bsf = pitch_diameter / (2.0 * ball_diameter) * shaft_hz * (1.0 - ratio * ratio)
    ftf = shaft_hz / 2.0 * (1.0 - ratio)
    return bpfo, bpfi, bsf, ftf


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
