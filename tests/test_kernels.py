"""The kernels against the slow reference, and against answers known from first principles."""

import math
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.featurizer import Featurizer
from edgewatch.kernels.layout import TIME_FEATURES, bearing_frequencies, hann
from edgewatch.kernels.timedomain import time_features
from edgewatch.sim.machine import Fault, Machine, simulate_waveform
from tests import reference
from tests.strategies import (
    BEARING,
    SAMPLE_RATES,
    assert_matches_reference,
    feature_tolerance,
    float_elements,
    varying_windows,
)

TOLERANCE = {np.float64: 1e-9, np.float32: 1e-4}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@settings(deadline=None, max_examples=150)
@given(data=st.data())
def test_time_features_match_reference(dtype, data):
    x = data.draw(arrays(dtype, st.integers(2, 700), elements=float_elements(dtype)))
    x64 = x.astype(np.float64)
    assume(np.var(x64) > 1e-8 * np.mean(x64**2))
    out = np.empty(len(TIME_FEATURES))
    windowed = np.empty_like(x)
    window = np.linspace(0.0, 1.0, x.size).astype(dtype)
    assert time_features(x, window, windowed, out)
    centred = (x64 - x64.mean()) * window
    np.testing.assert_allclose(windowed, centred, rtol=0, atol=TOLERANCE[dtype] * np.abs(x64).max())
    amplitude = float(np.max(np.abs(x64)))
    for name, got, want in zip(TIME_FEATURES, out, reference.time_features(x), strict=True):
        atol = feature_tolerance(name, amplitude, 1.0, TOLERANCE[dtype])
        np.testing.assert_allclose(got, want, rtol=TOLERANCE[dtype], atol=atol, err_msg=name)


@pytest.mark.usefixtures("kernel_form")
def test_flat_window_has_no_higher_moments_or_spectrum():
    spec = FeatureSpec(kind="waveform", sample_rate=1000, window=64, channels=["a"])
    got = Featurizer(spec)(np.full((1, 1, 64), 0.37))[0]
    named = dict(zip(spec.feature_names, got, strict=True))
    assert named["ch0.mean"] == pytest.approx(0.37)
    assert named["ch0.rms"] == pytest.approx(0.37)
    for name in ("skewness", "kurtosis", "spectral_centroid", "dominant_amp", "band_0_125"):
        assert named[f"ch0.{name}"] == 0.0, name
    zeros = Featurizer(spec)(np.zeros((1, 1, 64)))
    assert not zeros.any()


@st.composite
def waveform_specs(draw, channels: int, n: int):  # type: ignore[no-untyped-def]
    rate = draw(st.sampled_from(SAMPLE_RATES))
    nyquist = rate / 2
    options = {}
    if draw(st.booleans()):
        interior = draw(st.lists(st.integers(1, 99), min_size=1, max_size=4, unique=True))
        options["band_edges"] = (0.0, *(nyquist * k / 100 for k in sorted(interior)), nyquist)
        assume(all(hi - lo > 2 * rate / n for lo, hi in pairwise(options["band_edges"])))
    if draw(st.booleans()):
        bpfi_per_shaft = bearing_frequencies(1.0, **BEARING)[1]
        options["bearing"] = BEARING
        fastest = min(nyquist / (2 * bpfi_per_shaft), 2000.0)
        options["shaft_hz"] = draw(st.floats(0.05, 0.9)) * fastest
        if draw(st.booleans()):
            lo = draw(st.floats(0.0, 0.5)) * nyquist
            options["envelope_band"] = (lo, lo + draw(st.floats(0.2, 0.5)) * nyquist)
    families = draw(st.sampled_from([None, ("time",), ("spectral", "bands"), ("bands",)]))
    if families is not None:
        if "bearing" in options:
            families = (*families, "envelope")
        if "bands" not in families:
            options.pop("band_edges", None)
        options["families"] = families
    return FeatureSpec(
        kind="waveform",
        sample_rate=rate,
        window=n,
        channels=[f"axis{i}" for i in range(channels)],
        **options,
    )


@pytest.mark.usefixtures("kernel_form")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@settings(deadline=None, max_examples=120)
@given(data=st.data())
def test_window_features_match_reference(dtype, data):
    x = data.draw(varying_windows(dtype))
    spec = data.draw(waveform_specs(x.shape[0], x.shape[1]))
    out = np.empty((1, len(spec.feature_names)), dtype=dtype)
    Featurizer(spec)(x[None], out=out)
    assert_matches_reference(out[0], x, spec, TOLERANCE[dtype])


@pytest.mark.usefixtures("kernel_form")
@pytest.mark.parametrize("n", [1024, 4096])
def test_large_windows_match_reference(n):
    rng = np.random.default_rng(n)
    t = np.arange(n) / 25600.0
    x = np.stack(
        [
            rng.standard_normal(n) + 3 * np.sin(2 * np.pi * 437.0 * t),
            np.where(rng.random(n) < 0.01, 20.0, 0.0) + rng.standard_normal(n),
            0.2 + rng.standard_normal(n) ** 3,
        ]
    )
    spec = FeatureSpec(
        kind="waveform",
        sample_rate=25600,
        window=n,
        channels=["x", "y", "z"],
        bearing=BEARING,
        shaft_hz=29.95,
        envelope_band=(2000, 8000),
    )
    out = np.empty((1, len(spec.feature_names)))
    Featurizer(spec)(x[None], out=out)
    assert_matches_reference(out[0], x, spec, 1e-9)


@pytest.mark.usefixtures("kernel_form")
def test_batch_equals_one_window_at_a_time():
    spec = FeatureSpec(
        kind="waveform",
        sample_rate=12000,
        window=1024,
        channels=["a", "b", "c"],
        bearing=BEARING,
        shaft_hz=25.0,
    )
    windows = np.random.default_rng(7).standard_normal((9, 3, 1024)).astype(np.float32)
    featurizer = Featurizer(spec)
    batch = featurizer(windows)
    single = np.concatenate([featurizer(w[None]) for w in windows])
    np.testing.assert_array_equal(batch, single)


@settings(deadline=None, max_examples=60)
@given(
    freq_bins=st.floats(4.0, 500.0),
    amplitude=st.floats(0.01, 100.0),
    phase=st.floats(0.0, 2 * math.pi),
)
def test_sine_reads_its_frequency_and_rms(freq_bins, amplitude, phase):
    rate, n = 12000.0, 1024
    f = freq_bins * rate / n
    t = np.arange(n) / rate
    x = amplitude * np.sin(2 * np.pi * f * t + phase)
    spec = FeatureSpec(kind="waveform", sample_rate=rate, window=n, channels=["a"])
    named = dict(zip(spec.feature_names, Featurizer(spec)(x[None, None])[0], strict=True))
    assert abs(named["ch0.dominant_freq"] - f) <= rate / n
    # The mean square of n samples of a sine is A^2/2 (1 - S/n) with |S| <= 1/|sin(w)|, w the
    # radians per sample, so the RMS is A/sqrt(2) within 1/(2 n |sin w|).
    bound = 1 / (2 * n * abs(math.sin(2 * math.pi * f / rate)))
    assert named["ch0.rms"] == pytest.approx(amplitude / math.sqrt(2), rel=bound + 1e-6)


def test_gaussian_noise_has_kurtosis_three():
    spec = FeatureSpec(kind="waveform", sample_rate=12000, window=4096, channels=["a"])
    windows = np.random.default_rng(3).standard_normal((50, 1, 4096))
    kurtosis = Featurizer(spec)(windows)[:, spec.feature_names.index("ch0.kurtosis")]
    # The standard error of one window's kurtosis is sqrt(24/4096) = 0.077.
    assert np.median(kurtosis) == pytest.approx(3.0, abs=0.05)
    assert np.all(np.abs(kurtosis - 3.0) < 0.4)


@settings(deadline=None, max_examples=60)
@given(x=varying_windows(np.float64, sizes=(64, 256, 1024)), data=st.data())
def test_band_powers_add_up_to_the_windowed_mean_square(x, data):
    """Parseval: bands that tile 0..Nyquist hold all of the windowed signal's power."""
    rate = data.draw(st.sampled_from(SAMPLE_RATES))
    n = x.shape[1]
    cuts = data.draw(st.lists(st.integers(1, n // 2 - 1), max_size=6, unique=True))
    edges = (0.0, *sorted(k * rate / n for k in cuts), rate / 2)
    spec = FeatureSpec(
        kind="waveform",
        sample_rate=rate,
        window=n,
        families=("bands",),
        band_edges=edges,
        channels=[f"c{i}" for i in range(x.shape[0])],
    )
    out = np.empty((1, len(spec.feature_names)))
    Featurizer(spec)(x[None], out=out)
    w = hann(n)
    per_channel = out[0].reshape(x.shape[0], -1).sum(axis=1)
    d = x - x.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(per_channel, ((w * d) ** 2).sum(axis=1) / (w**2).sum(), rtol=1e-9)


def test_bearing_frequencies_match_the_handbook():
    # SKF 6205 at 1797 rpm; the CWRU data sheet gives BPFO 107.36, BPFI 162.19, BSF 141.17 (2x).
    got = bearing_frequencies(1797 / 60, **BEARING)
    np.testing.assert_allclose(got, reference.bearing_frequencies(1797 / 60, 9, 7.94, 39.04))
    assert got[0] == pytest.approx(107.36, abs=0.01)
    assert 2 * got[2] == pytest.approx(141.17, abs=0.01)
    angled = bearing_frequencies(20.0, 12, 10.0, 50.0, contact_angle_deg=15.0)
    np.testing.assert_allclose(angled, reference.bearing_frequencies(20.0, 12, 10.0, 50.0, 15.0))


def test_outer_race_fault_raises_env_bpfo():
    machine = Machine()
    rate, n = 25600.0, 4096
    spec = FeatureSpec(
        kind="waveform",
        sample_rate=rate,
        window=n,
        channels=["x", "y", "z"],
        bearing=machine.bearing,
        shaft_hz=machine.shaft_hz,
        envelope_band=(machine.resonance_hz - 1500, machine.resonance_hz + 1500),
    )
    healthy = simulate_waveform(machine, duration=2.0, sample_rate=rate, seed=1)
    faulty = simulate_waveform(
        machine,
        duration=2.0,
        sample_rate=rate,
        seed=1,
        faults=[Fault(kind="outer_race", start=0.0, end=2.0)],
    )
    featurizer = Featurizer(spec)
    column = spec.feature_names.index("ch0.env_bpfo")
    before = featurizer(healthy.windows(n, n))[:, column]
    after = featurizer(faulty.windows(n, n))[:, column]
    assert np.median(after) > 5 * np.median(before)
    other = spec.feature_names.index("ch0.env_bpfi")
    assert np.median(after) > 3 * np.median(featurizer(faulty.windows(n, n))[:, other])
