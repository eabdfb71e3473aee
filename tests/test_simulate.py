"""The simulator: deterministic, labelled, and physically what it claims."""

import numpy as np
import pytest
from pydantic import ValidationError

from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.featurizer import featurize
from edgewatch.agent.windows import frame, window_labels
from edgewatch.sim.machine import Fault, Machine, simulate_process, simulate_waveform

RATE = 25600.0


def amplitude_at(x: np.ndarray, hz: float, rate: float = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) * 2 / np.hanning(len(x)).sum()
    return float(spectrum[round(hz * len(x) / rate)])


def test_same_seed_same_signal_other_seed_other_signal():
    faults = [Fault(kind="inner_race", start=0.5, end=1.0), Fault(kind="spike", start=0, end=1)]
    a = simulate_waveform(Machine(), 1.0, RATE, seed=4, faults=faults)
    b = simulate_waveform(Machine(), 1.0, RATE, seed=4, faults=faults)
    c = simulate_waveform(Machine(), 1.0, RATE, seed=5, faults=faults)
    np.testing.assert_array_equal(a.signal, b.signal)
    assert not np.array_equal(a.signal, c.signal)
    assert a.signal.shape == (3, 25600) and a.signal.dtype == np.float32


def test_labels_mark_each_fault_per_sample_and_per_window():
    faults = [
        Fault(kind="imbalance", start=1.0, end=2.0),
        Fault(kind="dropout", start=3.0, end=3.5),
    ]
    sim = simulate_waveform(Machine(), 4.0, RATE, seed=0, faults=faults)
    assert np.all(sim.labels[: int(RATE)] == 0)
    assert np.all(sim.labels[int(RATE) : int(2 * RATE)] == 1)
    assert np.all(sim.labels[int(3 * RATE) : int(3.5 * RATE)] == 2)
    window = 6400
    labels = window_labels(sim.labels, window, window)
    assert labels.tolist() == [0] * 4 + [1] * 4 + [0] * 4 + [2] * 2 + [0] * 2
    assert len(labels) == len(sim.windows(window, window))


def test_imbalance_raises_the_running_speed_and_misalignment_its_second_harmonic():
    machine = Machine(noise_rms=0.0)
    healthy = simulate_waveform(machine, 1.0, RATE, seed=0).signal
    unbalanced = simulate_waveform(
        machine, 1.0, RATE, seed=0, faults=[Fault(kind="imbalance", start=0, end=1)]
    ).signal
    misaligned = simulate_waveform(
        machine, 1.0, RATE, seed=0, faults=[Fault(kind="misalignment", start=0, end=1)]
    ).signal
    f1 = machine.shaft_hz
    assert amplitude_at(unbalanced[0], f1) > 2 * amplitude_at(healthy[0], f1)
    assert amplitude_at(misaligned[2], 2 * f1) > 5 * amplitude_at(healthy[2], 2 * f1)


def test_bearing_impacts_follow_a_speed_change():
    machine = Machine(
        speed_changes=((1.0, 29.95), (2.0, 20.0)), noise_rms=0.0, harmonics=(), gear_amplitude=0.0
    )
    sim = simulate_waveform(
        machine, 3.0, RATE, seed=0, faults=[Fault(kind="outer_race", start=0, end=3)]
    )
    spec = FeatureSpec(
        kind="waveform", sample_rate=RATE, window=16384, channels=["x"], families=["time"]
    )
    del spec
    x = sim.signal[0]
    env = np.abs(x)
    bpfo_per_rev = 107.36 / 29.95
    early, late = env[: int(RATE)], env[int(2 * RATE) :]
    assert amplitude_at(early - early.mean(), bpfo_per_rev * 29.95) > amplitude_at(
        early - early.mean(), bpfo_per_rev * 20.0
    )
    assert amplitude_at(late - late.mean(), bpfo_per_rev * 20.0) > amplitude_at(
        late - late.mean(), bpfo_per_rev * 29.95
    )


@pytest.mark.parametrize("kind", ["dropout", "stuck", "saturation", "spike"])
def test_sensor_faults_change_what_the_sensor_reports(kind):
    fault = Fault(kind=kind, start=0.5, end=1.0, channel=1)
    sim = simulate_waveform(Machine(), 1.0, RATE, seed=2, faults=[fault])
    clean = simulate_waveform(Machine(), 1.0, RATE, seed=2).signal
    part, before = sim.signal[1, 12800:], clean[1, 12800:]
    np.testing.assert_array_equal(sim.signal[[0, 2]], clean[[0, 2]])
    if kind == "dropout":
        assert not part.any()
    elif kind == "stuck":
        assert np.all(part == before[0])
    elif kind == "saturation":
        assert np.abs(part).max() == pytest.approx(0.5 * np.abs(before).max(), rel=1e-6)
    else:
        assert np.abs(part).max() >= 10.0


def test_looseness_and_faults_show_in_the_features():
    spec = FeatureSpec(kind="waveform", sample_rate=RATE, window=4096, channels=["x", "y", "z"])
    healthy = featurize(spec, simulate_waveform(Machine(), 2.0, RATE, seed=3).windows(4096, 4096))
    loose = featurize(
        spec,
        simulate_waveform(
            Machine(),
            2.0,
            RATE,
            seed=3,
            faults=[Fault(kind="looseness", start=0, end=2, severity=2)],
        ).windows(4096, 4096),
    )
    rms = spec.feature_names.index("ch0.rms")
    assert np.median(loose[:, rms]) > 1.5 * np.median(healthy[:, rms])


def test_process_rows_are_correlated_and_faults_are_labelled():
    faults = [
        Fault(kind="drift", start=1800, end=3600, channel=0),
        Fault(kind="step", start=600, end=900, channel=2, severity=3),
    ]
    sim = simulate_process(3600, seed=1, faults=faults)
    assert sim.rows.shape == (3600, 4)
    clean = simulate_process(3600, seed=1)
    corr = np.corrcoef(clean.signal)
    assert corr[1, 2] > 0.9 and corr[2, 3] > 0.9
    assert sim.rows[3599, 0] - clean.rows[3599, 0] == pytest.approx(2.0, abs=0.01)
    np.testing.assert_allclose(sim.rows[600:900, 2] - clean.rows[600:900, 2], 1.5)
    assert set(np.unique(sim.labels)) == {0, 1, 2}
    assert sim.labels[700] == 2 and sim.labels[2000] == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: Fault(kind="spike", start=2, end=1), "must come after start"),
        (lambda: Fault(kind="meltdown", start=0, end=1), "kind"),
        (
            lambda: simulate_waveform(Machine(), 1, RATE, 0, [Fault(kind="drift", start=0, end=1)]),
            "process fault",
        ),
        (
            lambda: simulate_process(10, 0, [Fault(kind="outer_race", start=0, end=1)]),
            "waveform fault",
        ),
        (
            lambda: simulate_waveform(
                Machine(), 1, RATE, 0, [Fault(kind="stuck", start=0, end=1, channel=3)]
            ),
            "channel 3, but there are 3",
        ),
        (lambda: simulate_waveform(Machine(), 1, RATE, 0, channels=4), "channels must be 1 to 3"),
    ],
)
def test_bad_simulation_requests_are_refused(call, message):
    with pytest.raises((ValueError, ValidationError), match=message):
        call()


def test_frame_cuts_windows_and_drops_the_tail():
    signal = np.arange(20, dtype=np.float32).reshape(2, 10)
    windows = frame(signal, 4, 3)
    assert windows.shape == (3, 2, 4)
    assert windows[1].tolist() == [[3, 4, 5, 6], [13, 14, 15, 16]]
    assert frame(signal, 11, 1).shape == (0, 2, 11)
    with pytest.raises(ValueError, match="positive"):
        frame(signal, 0, 1)
