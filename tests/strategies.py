"""Hypothesis strategies and comparison helpers shared by the kernel tests."""

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tests import reference

SAMPLE_RATES = (1000.0, 12000.0, 25600.0, 51200.0)
# SKF 6205, the bearing of the Case Western Reserve data.
BEARING = {"balls": 9, "ball_diameter": 7.94, "pitch_diameter": 39.04}
# Features measured in the signal's units, in its units squared, in Hz; the rest are ratios.
_AMPLITUDE = {"mean", "std", "rms", "peak", "peak_to_peak", "dominant_amp"}
_FREQUENCY = {"spectral_centroid", "spectral_spread", "dominant_freq"}


def float_elements(dtype: type) -> st.SearchStrategy[float]:
    """Samples in physical units: zero, or about a micro-unit to a kilo-unit either way."""
    width = 32 if dtype == np.float32 else 64
    magnitude = st.floats(2**-20, 1024.0, width=width)
    return st.one_of(st.just(0.0), magnitude, magnitude.map(lambda v: -v))


@st.composite
def varying_windows(draw, dtype: type = np.float64, sizes=(16, 32, 64, 128, 256)):  # type: ignore[no-untyped-def]
    """``[channels, N]`` windows whose every channel varies well above rounding."""
    n = draw(st.sampled_from(sizes))
    channels = draw(st.integers(1, 3))
    x = draw(arrays(dtype, (channels, n), elements=float_elements(dtype)))
    for row in x.astype(np.float64):
        assume(np.var(row) > 1e-8 * np.mean(row**2))
    return x


def feature_tolerance(name: str, amplitude: float, sample_rate: float, rel: float) -> float:
    """An absolute floor for comparing ``name``: ``rel`` of the feature's natural scale."""
    base = name.split(".")[-1]
    if base in _AMPLITUDE or base.startswith("env_"):
        return rel * amplitude
    if base.startswith("band_"):
        return rel * amplitude**2
    if base in _FREQUENCY:
        return rel * sample_rate
    return rel


def reference_window(x: np.ndarray, spec) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Every feature of one window ``[channels, N]`` by the reference, keyed by feature name."""
    values: dict[str, float] = {}
    for c, row in enumerate(x):
        fam: list[float] = []
        if "time" in spec.families:
            fam += reference.time_features(row)
        spectral, bands = reference.spectral_features(
            row, spec.sample_rate, spec.band_edges or (0,)
        )
        if "spectral" in spec.families:
            fam += spectral
        if "bands" in spec.families:
            fam += bands
        if "envelope" in spec.families:
            fam += reference.envelope_features(
                row, spec.sample_rate, spec.defect_frequencies, spec.envelope_band
            )
        for name, v in zip(spec.channel_feature_names, fam, strict=True):
            values[f"ch{c}.{name}"] = float(v)
    return values


def assert_matches_reference(got: np.ndarray, x: np.ndarray, spec, rel: float) -> None:  # type: ignore[no-untyped-def]
    """Each feature of ``got`` equals the reference's within ``rel``, relative or of its scale.

    A dominant frequency may differ where two bins tie to within ``rel``: then the reference
    amplitude at the kernel's choice must equal the reference maximum.
    """
    want = reference_window(x, spec)
    amplitude = float(np.max(np.abs(x.astype(np.float64))))
    for j, name in enumerate(spec.feature_names):
        atol = feature_tolerance(name, amplitude, spec.sample_rate, rel)
        g, w = float(got[j]), want[name]
        if name.endswith("dominant_freq") and not np.isclose(g, w, rtol=rel, atol=atol):
            c = int(name[2 : name.index(".")])
            amp = reference.amplitude_spectrum(x[c])
            k = round(g * spec.window / spec.sample_rate)
            np.testing.assert_allclose(amp[k], amp[1:].max(), rtol=rel, err_msg=name)
            continue
        np.testing.assert_allclose(g, w, rtol=rel, atol=atol, err_msg=name)
