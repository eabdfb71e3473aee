"""Windows cut from blocks as they arrive equal windows cut from the whole signal."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewatch.agent.windows import Windower, frame

RATE = 1000.0


@given(
    st.integers(1, 3),
    st.sampled_from([(8, 8), (8, 4), (16, 5), (4, 1)]),
    st.lists(st.integers(1, 40), min_size=1, max_size=15),
)
@settings(max_examples=80)
def test_blocks_of_any_size_give_the_windows_of_the_whole_signal(channels, shape, sizes):
    window, hop = shape
    signal = np.random.default_rng(len(sizes)).normal(size=(channels, sum(sizes)))
    signal = signal.astype(np.float32)
    windower = Windower(window, hop)
    starts, windows = [], []
    at = 0
    for size in sizes:
        t, w = windower.push(at / RATE, RATE, signal[:, at : at + size])
        starts.append(t)
        windows.append(w)
        at += size
    expected = frame(signal, window, hop)
    np.testing.assert_array_equal(np.concatenate(windows), expected)
    np.testing.assert_allclose(np.concatenate(starts), np.arange(len(expected)) * hop / RATE)
    assert windower.restarts == 0


def test_a_gap_in_time_restarts_the_windows():
    windower = Windower(8, 4)
    ones = np.ones((1, 6), np.float32)
    assert len(windower.push(0.0, RATE, ones)[1]) == 0
    starts, windows = windower.push(6 / RATE, RATE, 2 * ones)
    assert starts.tolist() == [0.0, 0.004] and windows[0, 0].tolist() == [1] * 6 + [2] * 2
    starts, windows = windower.push(10.0, RATE, 3 * ones)
    assert len(windows) == 0 and windower.restarts == 1
    starts, windows = windower.push(10.006, RATE, 4 * ones)
    assert starts.tolist() == pytest.approx([10.0, 10.004])
    assert windows[0, 0].tolist() == [3] * 6 + [4] * 2


def test_a_change_of_rate_or_channels_restarts_and_jitter_does_not():
    windower = Windower(4, 4, max_gap_s=0.002)
    windower.push(0.0, RATE, np.zeros((2, 3), np.float32))
    windower.push(0.0031, RATE, np.zeros((2, 3), np.float32))
    assert windower.restarts == 0
    windower.push(0.006, 2 * RATE, np.zeros((2, 3), np.float32))
    windower.push(0.0075, 2 * RATE, np.zeros((3, 3), np.float32))
    assert windower.restarts == 2


def test_windows_must_be_sane():
    with pytest.raises(ValueError, match="hop <= window"):
        Windower(4, 5)
