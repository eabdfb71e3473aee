"""Slow, obviously-right NumPy/SciPy versions of every feature, one window or row at a time.

The kernels must match these. Written for clarity, never for speed.
"""

import math
from itertools import pairwise

import numpy as np
import scipy.signal
import scipy.stats

FLAT_VARIANCE_RATIO = 1e-20
ROLLING_FLAT_RATIO = 1e-20


def time_features(x: np.ndarray) -> list[float]:
    x = np.asarray(x, dtype=np.float64)
    mean = np.mean(x)
    var = np.var(x)
    rms = math.sqrt(np.mean(x**2))
    peak = np.max(np.abs(x))
    mean_abs = np.mean(np.abs(x))
    mean_sqrt = np.mean(np.sqrt(np.abs(x)))
    flat = var <= FLAT_VARIANCE_RATIO * np.mean(x**2)
    return [
        mean,
        math.sqrt(var),
        rms,
        peak,
        np.ptp(x),
        peak / rms if rms > 0 else 0.0,
        0.0 if flat else scipy.stats.skew(x, bias=True),
        0.0 if flat else scipy.stats.kurtosis(x, fisher=False, bias=True),
        rms / mean_abs if mean_abs > 0 else 0.0,
        peak / mean_abs if mean_abs > 0 else 0.0,
        peak / mean_sqrt**2 if mean_sqrt > 0 else 0.0,
    ]


def is_flat(x: np.ndarray) -> bool:
    x = np.asarray(x, dtype=np.float64)
    return bool(np.var(x) <= FLAT_VARIANCE_RATIO * np.mean(x**2))


def _one_sided_scale(n: int) -> np.ndarray:
    """2 for bins that stand for a positive and a negative frequency, 1 for DC and Nyquist."""
    scale = np.full(n // 2 + 1, 2.0)
    scale[0] = 1.0
    if n % 2 == 0:
        scale[-1] = 1.0
    return scale


def _band_mask(freqs: np.ndarray, lo: float, hi: float, sample_rate: float) -> np.ndarray:
    upper = freqs < hi
    if hi >= sample_rate / 2:
        upper = freqs <= sample_rate / 2
    return (freqs >= lo) & upper


def spectral_features(
    x: np.ndarray, sample_rate: float, band_edges: tuple[float, ...]
) -> tuple[list[float], list[float]]:
    """(centroid, spread, kurtosis, dominant freq, dominant amp), band powers."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if is_flat(x):
        return [0.0] * 5, [0.0] * (len(band_edges) - 1)
    w = scipy.signal.get_window("hann", n)
    spectrum = np.fft.rfft((x - x.mean()) * w)
    freqs = np.arange(n // 2 + 1) * sample_rate / n
    scale = _one_sided_scale(n)
    power = scale * np.abs(spectrum) ** 2 / (n * np.sum(w**2))
    amp = scale * np.abs(spectrum) / np.sum(w)
    centroid = np.sum(freqs * power) / np.sum(power)
    spread = math.sqrt(np.sum((freqs - centroid) ** 2 * power) / np.sum(power))
    kurt = np.sum((freqs - centroid) ** 4 * power) / np.sum(power) / spread**4
    k = 1 + int(np.argmax(amp[1:]))
    bands = [
        float(np.sum(power[_band_mask(freqs, lo, hi, sample_rate)]))
        for lo, hi in pairwise(band_edges)
    ]
    return [centroid, spread, kurt, freqs[k], amp[k]], bands


def amplitude_spectrum(x: np.ndarray) -> np.ndarray:
    """One-sided amplitude of (x - mean) under a Hann window; a centred sine of amplitude A
    reads A."""
    x = np.asarray(x, dtype=np.float64)
    w = scipy.signal.get_window("hann", len(x))
    return _one_sided_scale(len(x)) * np.abs(np.fft.rfft((x - x.mean()) * w)) / np.sum(w)


def bearing_frequencies(shaft_hz, balls, ball_d, pitch_d, angle_deg=0.0):
    """BPFO, BPFI, BSF, FTF, as printed in any bearing handbook."""
    c = ball_d / pitch_d * math.cos(math.radians(angle_deg))
    return (
        balls * shaft_hz / 2 * (1 - c),
        balls * shaft_hz / 2 * (1 + c),
        pitch_d * shaft_hz / (2 * ball_d) * (1 - c**2),
        shaft_hz / 2 * (1 - c),
    )


def envelope_features(
    x: np.ndarray,
    sample_rate: float,
    defects: tuple[float, ...],
    band: tuple[float, float] | None = None,
) -> list[float]:
    """The envelope spectrum's amplitude within one bin of each defect frequency and of its 2x."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    targets = [*defects, *(2 * f for f in defects)]
    if is_flat(x):
        return [0.0] * len(targets)
    signal = x - x.mean()
    if band is not None:
        full = np.fft.fft(signal)
        f = np.abs(np.fft.fftfreq(n, 1 / sample_rate))
        signal = np.fft.ifft(full * _band_mask(f, band[0], band[1], sample_rate)).real
    envelope = np.abs(scipy.signal.hilbert(signal))
    amp = amplitude_spectrum(envelope)
    last = n // 2
    readings = []
    for f in targets:
        k0 = int(np.rint(f * n / sample_rate))
        lo, hi = max(k0 - 1, 1), min(k0 + 1, last)
        readings.append(float(np.max(amp[lo : hi + 1])) if hi >= lo else 0.0)
    return readings


def rolling_features(rows: np.ndarray, history: int, alpha: float) -> np.ndarray:
    """value, mean, std, z-score, first difference and EWMA over the last ``history`` rows."""
    rows = np.asarray(rows, dtype=np.float64)
    n, channels = rows.shape
    out = np.zeros((n, channels, 6))
    for c in range(channels):
        ewma = rows[0, c]
        for t in range(n):
            x = rows[t, c]
            past = rows[max(0, t - history + 1) : t + 1, c]
            mean = past.mean()
            std = past.std()
            if std**2 <= ROLLING_FLAT_RATIO * np.mean(past**2):
                std = 0.0
            if t > 0:
                ewma = alpha * x + (1 - alpha) * ewma
            out[t, c] = [
                x,
                mean,
                std,
                (x - mean) / std if std > 0 else 0.0,
                x - rows[t - 1, c] if t > 0 else 0.0,
                ewma,
            ]
    return out.reshape(n, channels * 6)


def sequences(rows: np.ndarray, history: int) -> np.ndarray:
    """A sequence model's inputs: each row with the ``history - 1`` rows before it."""
    return np.array([rows[end - history : end] for end in range(history, len(rows) + 1)])
