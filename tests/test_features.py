"""The feature spec's defaults, names and refusals, and the featurizer's input checks."""

import numpy as np
import pytest
from pydantic import ValidationError

from edgewatch.agent.features import FeatureError, FeatureSpec, band_bins
from edgewatch.agent.featurizer import Featurizer, featurize

BEARING = {"balls": 9, "ball_diameter": 7.94, "pitch_diameter": 39.04}


def waveform(**overrides):
    options = {
        "kind": "waveform",
        "sample_rate": 12000,
        "window": 4096,
        "hop": 2048,
        "channels": ["de"],
    }
    options.update(overrides)
    return FeatureSpec(**options)


def test_the_documented_waveform_spec_has_sensible_defaults():
    spec = waveform()
    assert spec.families == ("time", "spectral", "bands")
    assert spec.band_edges == (0.0, 1500.0, 3000.0, 4500.0, 6000.0)
    names = spec.feature_names
    for name in (
        "ch0.rms",
        "ch0.kurtosis",
        "ch0.dominant_freq",
        "ch0.dominant_amp",
        "ch0.band_1500_3000",
    ):
        assert name in names
    assert len(names) == len(set(names)) == 20
    assert FeatureSpec(kind="waveform", sample_rate=1000, window=256, channels=["a"]).hop == 128


def test_names_are_per_channel_and_stable():
    spec = waveform(channels=["x", "y"], bearing=BEARING, shaft_hz=29.95)
    names = spec.feature_names
    assert names[0] == "ch0.mean" and "ch1.env_bpfo" in names and "ch0.env_ftf_2x" in names
    assert names.index("ch1.mean") == len(names) // 2
    again = FeatureSpec.model_validate_json(spec.model_dump_json())
    assert again == spec and again.feature_names == names


def test_families_select_columns_and_outputs_follow():
    spec = waveform(families=["bands"], band_edges=[0, 100, 6000])
    assert spec.feature_names == ("ch0.band_0_100", "ch0.band_100_6000")
    x = np.random.default_rng(0).standard_normal((2, 1, 4096)).astype(np.float32)
    full = featurize(waveform(band_edges=[0, 100, 6000]), x)
    np.testing.assert_array_equal(featurize(spec, x), full[:, -2:])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"window": 1000}, "power of two"),
        ({"hop": 5000}, "must not exceed window"),
        ({"band_edges": [0, 1000, 7000]}, "band edge 7000 Hz is above Nyquist (6000 Hz)"),
        ({"band_edges": [0, 2000, 1000]}, "strictly increasing"),
        ({"band_edges": [0, 1, 2]}, "holds no FFT bin"),
        ({"band_edges": [500]}, "at least two edges"),
        ({"bearing": BEARING}, "needs bearing and shaft_hz"),
        ({"families": ["envelope"], "shaft_hz": 30.0}, "needs bearing and shaft_hz"),
        ({"bearing": BEARING, "shaft_hz": 600.0}, "not below Nyquist"),
        ({"bearing": BEARING, "shaft_hz": 30, "envelope_band": [3000, 9000]}, "envelope_band"),
        ({"families": ["time"], "band_edges": [0, 10]}, "bands family is not selected"),
        ({"families": ["time", "time"]}, "each family once"),
        ({"families": []}, "each family once"),
        ({"families": ["time", "wavelets"]}, "families"),
        ({"history": 10}, "only for process inputs"),
        ({"channels": []}, "channels"),
        ({"channels": ["a", "a"]}, "distinct"),
        ({"sample_rate": -1}, "sample_rate"),
        ({"window": None}, "need sample_rate and window"),
        ({"colour": "red"}, "colour"),
        ({"bearing": {**BEARING, "ball_diameter": 50}, "shaft_hz": 30}, "smaller than pitch"),
    ],
)
def test_bad_waveform_specs_are_refused_with_a_reason(overrides, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        waveform(**overrides)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kind": "process", "window": 64}, "window: only for waveform inputs"),
        ({"kind": "process", "history": 1}, "history"),
        ({"kind": "process", "ewma_alpha": 0}, "ewma_alpha"),
        ({"kind": "record", "history": 5}, "only for process inputs"),
        ({"kind": "record", "rolling": ["ewma"]}, "rolling: only for process inputs"),
        ({"kind": "process", "rolling": []}, "at least one"),
        ({"kind": "process", "rolling": ["ewma", "ewma"]}, "each statistic once"),
        ({"kind": "process", "rolling": ["ewma", "value"]}, "keep the order"),
        ({"kind": "process", "rolling": ["median"]}, "rolling"),
        ({"kind": "image"}, "kind"),
    ],
)
def test_bad_row_specs_are_refused(options, message):
    with pytest.raises(ValidationError, match=message):
        FeatureSpec(channels=["a"], **options)


def test_spec_is_frozen():
    with pytest.raises(ValidationError):
        waveform().window = 8  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([[[0.0] * 4096]], "expected a numpy array, got list"),
        (np.zeros((2, 1, 4096), dtype=np.int16), "expected float32 or float64 samples, got int16"),
        (np.zeros((1, 4096)), r"expected shape \[n, 1, 4096\] \(windows x channels x samples\)"),
        (np.zeros((1, 2, 4096)), r"got \[1, 2, 4096\]"),
        (np.zeros((1, 1, 2048)), r"expected shape \[n, 1, 4096\]"),
    ],
)
def test_featurizer_rejects_data_that_does_not_fit(data, message):
    with pytest.raises(FeatureError, match=message):
        featurize(waveform(), data)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_featurizer_names_the_window_and_channel_holding_nan_or_inf(bad):
    spec = waveform(channels=["x", "y"])
    data = np.random.default_rng(1).standard_normal((3, 2, 4096)).astype(np.float32)
    data[2, 1, 100] = bad
    with pytest.raises(FeatureError, match=r"window 2, channel 1 \(y\) holds NaN or inf"):
        featurize(spec, data)
    with pytest.raises(FeatureError, match=r"window 0, channel 1 \(y\)"):
        featurize(spec, data[2:])


def test_featurizer_explains_samples_too_small_for_fourth_powers():
    data = np.zeros((1, 1, 4096))
    data[0, 0, 0] = 1e-149
    with pytest.raises(FeatureError, match="keep them between 1e-30 and 1e"):
        featurize(waveform(), data)


def test_process_rows_with_nan_are_refused_and_leave_the_state_alone():
    spec = FeatureSpec(kind="process", channels=["t", "p"])
    featurizer = Featurizer(spec)
    rows = np.array([[20.0, 1.0], [21.0, 1.1]])
    first = featurizer(rows[:1])
    with pytest.raises(FeatureError, match=r"row 0, channel 1 \(p\) is NaN or inf"):
        featurizer(np.array([[22.0, np.nan]]))
    np.testing.assert_array_equal(
        np.concatenate([first, featurizer(rows[1:])]), featurize(spec, rows)
    )


def test_featurizer_checks_a_given_output_array():
    spec = waveform()
    x = np.zeros((2, 1, 4096), dtype=np.float32)
    with pytest.raises(FeatureError, match=r"out: expected a C-contiguous float32 or float64"):
        Featurizer(spec)(x, out=np.empty((2, 19)))
    with pytest.raises(FeatureError, match="out"):
        Featurizer(spec)(x, out=np.empty((2, 20), dtype=np.int32))


def test_no_windows_give_an_empty_matrix():
    assert featurize(waveform(), np.zeros((0, 1, 4096), np.float32)).shape == (0, 20)


def test_band_bins_put_each_bin_on_one_side_of_an_edge():
    lo, hi = band_bins((0.0, 1500.0, 3000.0, 6000.0), 12000.0, 4096)
    assert lo.tolist() == [0, 512, 1024]
    assert hi.tolist() == [512, 1024, 2049]
    lo, hi = band_bins((10.0, 20.0), 12000.0, 4096)
    assert (lo.tolist(), hi.tolist()) == ([4], [7])


def test_the_numba_cache_follows_numba_cache_dir_and_the_kernel_sources(tmp_path, monkeypatch):
    import shutil
    from pathlib import Path

    from edgewatch import kernels
    from edgewatch.kernels.cache import cache_dir

    sources = tmp_path / "kernels"
    shutil.copytree(
        Path(kernels.__file__).parent, sources, ignore=shutil.ignore_patterns("__pycache__")
    )
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    before = cache_dir(sources)
    assert before.parent == tmp_path / "cache"
    assert before == cache_dir(sources)
    spectral = sources / "spectral.py"
    spectral.write_text(spectral.read_text() + "\n# changed\n")
    assert cache_dir(sources) != before
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir(sources).parent == tmp_path / "xdg" / "edgewatch" / "numba"


def test_a_process_spec_can_pick_its_rolling_statistics():
    rows = np.random.default_rng(8).normal(size=(50, 2)) + 5
    full = FeatureSpec(kind="process", channels=["t", "p"])
    picked = FeatureSpec(kind="process", channels=["t", "p"], rolling=["roll_mean", "ewma"])
    assert picked.feature_names == ("ch0.roll_mean", "ch0.ewma", "ch1.roll_mean", "ch1.ewma")
    everything = featurize(full, rows)
    columns = [full.feature_names.index(name) for name in picked.feature_names]
    np.testing.assert_array_equal(featurize(picked, rows), everything[:, columns])
    assert full.rolling == ("value", "roll_mean", "roll_std", "zscore", "diff", "ewma")
