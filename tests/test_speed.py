"""A waveform machine whose speed changes: each window's speed measured on a tachometer, its
envelope read at that speed's defect frequencies, the same in training as in serving, windows
without a speed counted, and a fault at a varying speed diagnosed as the right defect."""

import numpy as np
import pytest

from edgewatch.agent.alerts import AlertMaker
from edgewatch.agent.bundle_writer import write_bundle
from edgewatch.agent.config import ConfigError, validate
from edgewatch.agent.decision import Transition
from edgewatch.agent.features import FeatureError, FeatureSpec
from edgewatch.agent.featurizer import featurize, recording_features, shaft_speeds
from edgewatch.agent.framing import Block
from edgewatch.agent.machines import Router
from edgewatch.agent.metrics import Registry
from edgewatch.agent.onsite.baseline import fingerprint
from edgewatch.agent.onsite.learn import learn
from edgewatch.agent.scorer import Scorer
from edgewatch.agent.speed_tags import SpeedTags
from edgewatch.agent.streams import StreamMetrics, Streams
from edgewatch.sim.machine import Fault, Machine, simulate_waveform
from tests.conftest import edgewatch

RATE = 25600.0
WINDOW = 4096
# From 24 Hz up to 36 Hz over the first 20 s, then steady.
RAMP = Machine(shaft_hz=24.0, speed_changes=((20.0, 36.0),))
SPEC = FeatureSpec(
    kind="waveform",
    sample_rate=RATE,
    window=WINDOW,
    hop=WINDOW,
    channels=["x", "y", "tach"],
    bearing=RAMP.bearing,
    speed={"channel": "tach", "pulses_per_rev": 2, "range_hz": [10.0, 50.0]},
)


def run(seconds: float, seed: int, faults=()):  # type: ignore[no-untyped-def]
    return simulate_waveform(RAMP, seconds, RATE, seed, faults, channels=2, tachometer=2)


def test_the_speed_is_measured_window_by_window() -> None:
    windows = run(20.0, 1).windows(WINDOW, WINDOW)
    centres = (np.arange(len(windows)) * WINDOW + WINDOW / 2) / RATE
    expected = 24.0 + 12.0 * centres / 20.0
    np.testing.assert_allclose(shaft_speeds(SPEC, windows), expected, rtol=5e-3)


def test_each_window_is_featurized_at_its_own_speed() -> None:
    windows = run(20.0, 2).windows(WINDOW, WINDOW)[::10]
    rows = featurize(SPEC, windows)
    speeds = shaft_speeds(SPEC, windows)
    assert SPEC.feature_names[-1] == "ch2.shaft_hz"
    np.testing.assert_array_equal(rows[:, -1], speeds.astype(np.float32))
    for window, row, speed in zip(windows, rows, speeds, strict=True):
        at = {"speed": None, "channels": ["x", "y"], "shaft_hz": float(speed)}
        fixed = FeatureSpec(**{**SPEC.model_dump(), **at})
        np.testing.assert_array_equal(row[:-1], featurize(fixed, window[None, :2])[0])


def test_serving_gives_the_features_training_does_and_counts_windows_without_a_speed() -> None:
    signal = run(12.0, 3).signal.copy()
    stopped = slice(int(4 * RATE), int(6 * RATE))
    signal[2, stopped] = 0.0  # the shaft stands: no pulses
    training = recording_features(SPEC, signal[:, : int(4 * RATE)].T)
    streams = Streams(StreamMetrics.of(Registry()))
    streams.use(SPEC, history=1)
    step = 2560
    blocks = [
        Block("fan", start / RATE, RATE, signal[:, start : start + step], SPEC.channels)
        for start in range(0, signal.shape[1], step)
    ]
    batch = streams.batch(blocks)
    assert batch.rows is not None
    np.testing.assert_array_equal(batch.rows[: len(training)], training)
    assert batch.dropped["no_speed"] >= 10
    fast = signal.copy()
    fast[2] = 5.0 * ((np.arange(fast.shape[1]) / RATE * 2 * 80.0) % 1.0 < 0.1)  # 80 Hz
    batch = streams.batch([Block("fan", 100.0, RATE, fast, SPEC.channels)])
    assert batch.dropped["speed_out_of_range"] == len(fast[0]) // WINDOW  # a gap: afresh
    with pytest.raises(FeatureError, match="window 0 has no shaft speed"):
        featurize(SPEC, fast[None, :, :WINDOW].astype(np.float32))


def test_a_fault_at_a_varying_speed_is_named_with_the_line_of_its_speed(tmp_path) -> None:
    healthy = recording_features(SPEC, run(120.0, 4).signal.T)
    learned = learn(healthy, SPEC)
    bundle = write_bundle(tmp_path / "b", learned.manifest, learned.files)
    faulty = run(20.0, 5, [Fault(kind="outer_race", start=0.0, end=20.0)])
    windows = faulty.windows(WINDOW, WINDOW)
    rows = featurize(SPEC, windows)
    scores = Scorer(bundle)(rows).calibrated
    alerted = np.flatnonzero(scores > bundle.manifest.thresholds.warning)
    assert len(alerted) >= 0.8 * len(rows)
    maker = AlertMaker("s")
    for i in alerted:
        step = Transition("raised", f"a{i}", "warning", 0.0, 1.0, float(scores[i]), 2.0, 0)
        diagnosis = maker.make("fan", step, bundle, rows[i]).diagnosis
        bpfo = SPEC.defects_at(float(rows[i, -1]))[0]
        assert diagnosis.startswith(f"outer_race (BPFO {bpfo:.1f} Hz"), diagnosis


VALUE = FeatureSpec(
    kind="waveform",
    sample_rate=RATE,
    window=WINDOW,
    hop=WINDOW,
    channels=["x", "y", "speed"],
    bearing=RAMP.bearing,
    speed={"channel": "speed", "kind": "value", "scale": 1 / 60, "range_hz": [10.0, 50.0]},
)
AGENT = {
    "site": "s",
    "device": "g",
    "sources": [{"type": "mqtt", "topic": "t"}],
    "sinks": [{"type": "stdout"}],
    "mqtt": {},
}
TAGGED = {
    "name": "fans",
    "devices": ["fan-*"],
    "learn": {},
    "features": VALUE.model_dump(),
    "speed_tag": {"device": "drive-1", "channel": "rpm", "max_age_s": 2.0},
}


def test_a_process_tag_gives_a_machine_its_speed_as_training_read_it() -> None:
    config = validate({**AGENT, "machines": [TAGGED]})
    router = Router(config.machines, default=False, max_devices=10)
    tags = SpeedTags(config.machines)
    vibration = simulate_waveform(Machine(shaft_hz=30.0), 4.0, RATE, 6, channels=2).signal
    rpm = Block("drive-1", 0.5, 1.0, np.array([[1500.0], [2.5]]), ("rpm", "flow"))
    assert tags(rpm, router.route("drive-1")) is rpm
    streams = Streams(StreamMetrics.of(Registry()))
    streams.use(VALUE, history=1)
    blocks = [
        tags(Block("fan-1", start / RATE, RATE, vibration[:, start : start + 2560], ("x", "y")),
             router.route("fan-1"))
        for start in range(0, int(2 * RATE), 2560)
    ]  # fmt: skip
    assert blocks[0].channels == ("x", "y", "speed") and blocks[0].samples[2, 0] == 1500.0
    rows = streams.batch(blocks).rows
    recorded = np.vstack([vibration[:, : int(2 * RATE)], np.full((1, int(2 * RATE)), 1500, "f4")])
    np.testing.assert_array_equal(rows, recorded_rows := recording_features(VALUE, recorded.T))
    assert (recorded_rows[:, -1] == 25.0).all()
    late = Block("fan-1", 3.0, RATE, vibration[:, int(3 * RATE) :], ("x", "y"))
    batch = streams.batch([tags(late, router.route("fan-1"))])
    assert batch.rows is None and batch.dropped["no_speed"] == int(RATE) // WINDOW


def test_a_speed_tag_needs_a_value_speed_on_its_channel() -> None:
    wrong = {**TAGGED, "features": {**VALUE.model_dump(), "speed": {"channel": "speed",
             "range_hz": [10.0, 50.0]}}}  # fmt: skip
    with pytest.raises(ConfigError, match="speed of kind 'value' on that channel"):
        validate({**AGENT, "machines": [wrong]})


def test_the_simulator_drives_a_tachometer_through_a_ramp(tmp_path) -> None:
    out = tmp_path / "run.csv"
    edgewatch("simulate", "--to", str(out), "--duration", "4", "--channels", "2",
              "--tachometer", "2", "--ramp", "4:36")  # fmt: skip
    header = out.read_text().split("\n", 1)[0]
    assert header == "x,y,tach"
    samples = np.loadtxt(out, delimiter=",", skiprows=1, dtype=np.float32)
    windows = samples[: 24 * WINDOW].T.reshape(3, 24, WINDOW).transpose(1, 0, 2)
    speeds = shaft_speeds(SPEC, windows)
    centres = (np.arange(24) * WINDOW + WINDOW / 2) / RATE
    np.testing.assert_allclose(speeds, 29.95 + (36 - 29.95) * centres / 4, rtol=5e-3)


def test_a_baseline_saved_before_speed_channels_still_matches_its_spec() -> None:
    """The fingerprints of these specs as saved by the release before ``speed`` existed."""
    process = FeatureSpec(kind="process", channels=["a", "b"])
    waveform = FeatureSpec(kind="waveform", channels=["a"], sample_rate=1000, window=256)
    assert fingerprint(process).startswith("400c5fc0c669a4a5")
    assert fingerprint(waveform).startswith("18e41f0aac683457")
    assert fingerprint(VALUE) != fingerprint(FeatureSpec(**{**VALUE.model_dump(), "speed": None,
                                                          "shaft_hz": 30.0}))  # fmt: skip
