"""The waveform features in batched NumPy, as a careful NumPy user would write them.

The reference the kernel benchmark measures the Numba featurizer against: whole-array
operations over ``[n, channels, N]``, no Python loop over windows. It computes what
``agent.features.Featurizer`` computes, to the precision of the input's dtype.
"""

import numpy as np

from edgewatch.agent.features import FeatureSpec, band_bins
from edgewatch.kernels.layout import FLAT_VARIANCE_RATIO, hann


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    ratio: np.ndarray = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return ratio


def numpy_features(spec: FeatureSpec, windows: np.ndarray) -> np.ndarray:
    """Features of ``windows[n, channels, N]`` as float32 ``[n, len(spec.feature_names)]``."""
    assert spec.window is not None and spec.sample_rate is not None
    assert spec.families is not None
    n_windows, channels, n = windows.shape
    rate = spec.sample_rate
    x = windows
    mean = x.mean(axis=-1, keepdims=True, dtype=np.float64)
    d = x - mean.astype(x.dtype)
    d2 = d * d
    m2 = d2.mean(axis=-1, dtype=np.float64)
    ms = (x * x).mean(axis=-1, dtype=np.float64)
    varies = m2 > FLAT_VARIANCE_RATIO * ms
    families: dict[str, list[np.ndarray]] = {}
    if "time" in spec.families:
        m3 = (d2 * d).mean(axis=-1, dtype=np.float64)
        m4 = (d2 * d2).mean(axis=-1, dtype=np.float64)
        ax = np.abs(x)
        rms = np.sqrt(ms)
        peak = ax.max(axis=-1).astype(np.float64)
        mean_abs = ax.mean(axis=-1, dtype=np.float64)
        mean_sqrt = np.sqrt(ax).mean(axis=-1, dtype=np.float64)
        hi, lo = x.max(axis=-1).astype(np.float64), x.min(axis=-1).astype(np.float64)
        std = np.sqrt(m2)
        families["time"] = [
            mean[..., 0],
            std,
            rms,
            peak,
            hi - lo,
            _safe_ratio(peak, rms),
            np.where(varies, _safe_ratio(m3, m2 * std), 0.0),
            np.where(varies, _safe_ratio(m4, m2 * m2), 0.0),
            _safe_ratio(rms, mean_abs),
            _safe_ratio(peak, mean_abs),
            _safe_ratio(peak, mean_sqrt**2),
        ]
    w = hann(n).astype(x.dtype)
    m = n // 2 + 1
    one_sided = np.full(m, 2.0)
    one_sided[0] = one_sided[-1] = 1.0
    if "spectral" in spec.families or "bands" in spec.families:
        spectrum = np.fft.rfft(d * w, axis=-1)
        mag2 = spectrum.real.astype(np.float64) ** 2 + spectrum.imag.astype(np.float64) ** 2
        power = mag2 * (one_sided / (n * float((w.astype(np.float64) ** 2).sum())))
        power[~varies] = 0.0
        if "spectral" in spec.families:
            freqs = np.arange(m) * (rate / n)
            total = power.sum(axis=-1)
            centroid = _safe_ratio(power @ freqs, total)
            dev2 = (freqs - centroid[..., None]) ** 2
            c2 = _safe_ratio((power * dev2).sum(axis=-1), total)
            c4 = _safe_ratio((power * dev2 * dev2).sum(axis=-1), total)
            amp = np.sqrt(mag2[..., 1:] * one_sided[1:] ** 2) / float(w.astype(np.float64).sum())
            k = amp.argmax(axis=-1)
            peak_amp = np.where(varies, np.take_along_axis(amp, k[..., None], -1)[..., 0], 0.0)
            families["spectral"] = [
                centroid,
                np.sqrt(c2),
                _safe_ratio(c4, c2 * c2),
                np.where(varies, (k + 1) * (rate / n), 0.0),
                peak_amp,
            ]
        if "bands" in spec.families:
            assert spec.band_edges is not None
            lo_bins, hi_bins = band_bins(spec.band_edges, rate, n)
            families["bands"] = [
                power[..., a:b].sum(axis=-1) for a, b in zip(lo_bins, hi_bins, strict=True)
            ]
    if "envelope" in spec.families:
        families["envelope"] = _envelope(spec, d, w, one_sided, varies)
    columns = [col for family in spec.family_feature_names for col in families[family]]
    return np.stack(columns, axis=-1).reshape(n_windows, channels * len(columns)).astype(np.float32)


def _envelope(
    spec: FeatureSpec, d: np.ndarray, w: np.ndarray, one_sided: np.ndarray, varies: np.ndarray
) -> list[np.ndarray]:
    assert spec.window is not None and spec.sample_rate is not None
    n, rate = spec.window, spec.sample_rate
    lo, hi = band_bins(spec.envelope_band or (0.0, rate / 2), rate, n)
    half = np.fft.rfft(d, axis=-1)
    analytic = np.zeros((*d.shape[:-1], n), dtype=half.dtype)
    analytic[..., lo[0] : hi[0]] = (half * one_sided)[..., lo[0] : hi[0]]
    envelope = np.abs(np.fft.ifft(analytic, axis=-1))
    envelope -= envelope.mean(axis=-1, keepdims=True)
    amp = np.abs(np.fft.rfft(envelope * w, axis=-1)) * one_sided / float(w.sum())
    defects = np.array(spec.defect_frequencies)
    readings = []
    for target in np.concatenate([defects, 2 * defects]):
        k0 = int(np.rint(target * n / rate))
        near = amp[..., max(k0 - 1, 1) : min(k0 + 2, n // 2 + 1)].max(axis=-1)
        readings.append(np.where(varies, near, 0.0))
    return readings
