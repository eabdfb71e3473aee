"""The streaming process features against the reference, however the stream is chunked."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.featurizer import Featurizer, featurize
from tests import reference


@st.composite
def quantised_streams(draw):  # type: ignore[no-untyped-def]
    """Rows as a process sensor reports them: readings on a 0.01 grid, with stuck stretches
    (runs of one value) as often as not. On such a grid a variance is either exactly zero or
    far above rounding, so no feature sits on the edge of its definition."""
    n = draw(st.integers(1, 120))
    channels = draw(st.integers(1, 4))
    codes = draw(arrays(np.int64, (n, channels), elements=st.integers(-100_000, 100_000)))
    if draw(st.booleans()):
        stuck = draw(st.integers(0, n - 1))
        codes[stuck:] = codes[stuck]
    return codes * 0.01


@pytest.mark.usefixtures("kernel_form")
@settings(deadline=None, max_examples=200)
@given(
    rows=quantised_streams(), history=st.integers(2, 25), alpha=st.floats(0.01, 1.0), data=st.data()
)
def test_rolling_features_match_reference_in_any_chunking(rows, history, alpha, data):
    spec = FeatureSpec(
        kind="process",
        channels=[f"p{i}" for i in range(rows.shape[1])],
        history=history,
        ewma_alpha=alpha,
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(rows)), max_size=5)))
    featurizer = Featurizer(spec)
    parts = [
        featurizer(rows[a:b], out=np.empty((b - a, len(spec.feature_names))))
        for a, b in zip([0, *cuts], [*cuts, len(rows)], strict=True)
    ]
    got = np.concatenate(parts)
    want = reference.rolling_features(rows, history, alpha)
    scale = float(np.abs(rows).max()) or 1.0
    std = want.reshape(len(rows), -1, 6)[:, :, 2]
    for j, name in enumerate(spec.feature_names):
        atol = np.full(len(rows), 1e-9 * scale)
        if name.endswith("zscore"):
            # z = (x - mean) / std inherits the mean's absolute error divided by std.
            atol /= np.where(std > 0, std, 1.0)[:, j // 6]
        off = np.abs(got[:, j] - want[:, j]) > 1e-9 * np.abs(want[:, j]) + atol
        assert not off.any(), (name, np.flatnonzero(off), got[off, j], want[off, j])


@pytest.mark.usefixtures("kernel_form")
def test_a_stuck_sensor_reads_zero_std_and_zero_z_after_a_long_stream():
    rng = np.random.default_rng(5)
    rows = np.concatenate([1000 + rng.standard_normal((5000, 1)), np.full((200, 1), 1003.17)])
    spec = FeatureSpec(kind="process", channels=["t"], history=30)
    out = featurize(spec, rows)
    assert np.all(out[-170:, 2] == 0.0)
    assert np.all(out[-170:, 3] == 0.0)


@pytest.mark.usefixtures("kernel_form")
def test_long_streams_do_not_drift_from_exact_statistics():
    rng = np.random.default_rng(9)
    rows = 5e4 + np.cumsum(rng.standard_normal((20_000, 2)), axis=0)
    spec = FeatureSpec(kind="process", channels=["a", "b"], history=64)
    out = np.empty((len(rows), len(spec.feature_names)))
    Featurizer(spec)(rows, out=out)
    tail = rows[-64:]
    np.testing.assert_allclose(out[-1, [1, 7]], tail.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(out[-1, [2, 8]], tail.std(axis=0), rtol=1e-9)


def test_record_rows_pass_through_as_float32():
    spec = FeatureSpec(kind="record", channels=["duration", "bytes"])
    rows = np.array([[1.5, 300.0], [0.25, 12.0]])
    out = featurize(spec, rows)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, rows.astype(np.float32))
    assert spec.feature_names == ("ch0.value", "ch1.value")
