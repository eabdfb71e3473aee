"""The drift watch: false signals as rare as promised on calibrated normal scores, a slow and
lasting move signalled once with the features that moved, and a fault left to the alerts."""

import numpy as np
import pytest

from edgewatch.agent.bundle import verify_bundle
from edgewatch.agent.config import ConfigError, validate
from edgewatch.agent.decision_settings import DriftSettings
from edgewatch.agent.drift import DriftWatch

WARNING = 2.0


def normal_scores(rng: np.random.Generator, n: int) -> np.ndarray:
    """Calibrated scores of normal windows: ``-log10`` of a uniform share."""
    return -np.log10(rng.uniform(size=n))


@pytest.fixture
def manifest(bundles):  # type: ignore[no-untyped-def]
    return verify_bundle(bundles["pump"]).manifest


def rows_like(manifest, n, shift=None):  # type: ignore[no-untyped-def]
    stats = manifest.feature_stats
    rows = np.tile(np.array(stats.mean, dtype=np.float32), (n, 1))
    if shift is not None:
        index, sds = shift
        rows[:, index] += sds * stats.std[index]
    return rows


def run_until_signal(watch, manifest, scores, rows, batch=250):  # type: ignore[no-untyped-def]
    for start in range(0, len(scores), batch):
        cut = slice(start, start + batch)
        ends = np.arange(start, min(start + batch, len(scores)), dtype=np.float64)
        found = watch.watch("m", ends, scores[cut], rows[cut], manifest, WARNING)
        if found is not None:
            return found
    return None


def test_false_signals_on_normal_scores_are_at_least_as_rare_as_asked(manifest):
    rng = np.random.default_rng(0)
    run_length = 2000
    lengths = []
    for _ in range(60):
        watch = DriftWatch(run_length=run_length)
        scores = normal_scores(rng, 40 * run_length)
        found = run_until_signal(watch, manifest, scores, rows_like(manifest, len(scores)))
        lengths.append(found.ts + 1 if found is not None else len(scores))
    assert np.mean(lengths) >= run_length


def test_a_slow_lasting_rise_is_signalled_once_with_the_feature_that_moved(manifest):
    rng = np.random.default_rng(1)
    watch = DriftWatch()
    normal = normal_scores(rng, 20_000)
    # The share of windows between levels 1 and 2 triples, and none reaches the warning.
    raised = np.where(rng.uniform(size=20_000) < 0.3, rng.uniform(1.0, 1.9, 20_000), 0.5)
    scores = np.concatenate([normal, raised])
    rows = np.concatenate([rows_like(manifest, 20_000), rows_like(manifest, 20_000, (5, 4.0))])
    found = run_until_signal(watch, manifest, scores, rows)
    assert found is not None and 20_000 < found.ts < 22_000
    assert found.features[0]["name"] == manifest.feature_names[5]
    assert found.event()["event"] == "drift" and found.event()["adapted"] is False
    assert watch.drifted() == ["m"]
    assert run_until_signal(watch, manifest, scores[30_000:], rows[30_000:]) is None
    watch.reset(["m"])
    assert watch.drifted() == []


def test_a_steep_fault_is_left_to_the_alerts(manifest):
    rng = np.random.default_rng(2)
    watch = DriftWatch()
    scores = normal_scores(rng, 30_000)
    scores[10_000:10_500] = 6.0
    scores[20_000:22_000:3] = 4.0
    assert run_until_signal(watch, manifest, scores, rows_like(manifest, len(scores))) is None


def test_drift_settings_are_checked():
    base = {
        "site": "s",
        "device": "g",
        "model": {"bundle": "/b"},
        "sources": [{"type": "mqtt", "topic": "t"}],
        "sinks": [{"type": "stdout"}],
        "mqtt": {},
    }
    assert validate(base).drift.run_length == 365 * 86_400 / 10
    with pytest.raises(ConfigError, match="asks for more than every window"):
        validate({**base, "drift": {"level": 0.1, "ratio": 2}})
    with pytest.raises(ConfigError, match=r"drift\.run_length_days"):
        validate({**base, "drift": {"run_length_days": 0.5}})
    with pytest.raises(ConfigError, match=r"drift\.spacing_s"):
        validate({**base, "drift": {"spacing_s": 0}})


def test_a_fast_stream_gives_the_watch_one_window_per_spacing(manifest):
    """Scores at 25 windows a second, every one of them above the level: with a spacing of
    10 s the sum grows by one step per 10 s, as it would for a device that sends that often."""
    watch = DriftWatch(spacing_s=10.0)
    ends = np.arange(0, 100, 0.04)
    scores = np.full(len(ends), 1.5)
    assert (
        watch.watch("fast", ends, scores, rows_like(manifest, len(ends)), manifest, WARNING) is None
    )
    state = watch._watches["fast"]
    assert state.since == 10 and state.total == pytest.approx(10 * watch.up)


def test_a_learned_machine_reports_a_slow_drift_before_its_first_alert(tmp_path):
    from edgewatch.sim.machine import Fault
    from tests.test_machines import Kept, _learning, _process

    kept = Kept()
    pipe = _learning(tmp_path, kept, [])
    d = DriftSettings()  # the agent's defaults
    pipe.drift = DriftWatch(d.level, d.ratio, d.run_length, spacing_s=d.spacing_s)
    events: list[dict[str, object]] = []
    pipe.report = events.append
    fault = Fault(kind="drift", start=4000, end=7200, severity=3)
    run = list(_process("pump-1", 7200, faults=(fault,)))  # blocks of 10 s
    pipe.process(run[:364])
    assert pipe.learner is not None
    pipe.learner._jobs.get_nowait()()  # the fitting thread's turn
    for block in run[364:]:
        pipe.process([block])
    (drift,) = events
    raised = [a.started_at.timestamp() for a in kept.alerts if a.state == "raised"]
    assert drift["event"] == "drift" and drift["device"] == "pump-1"
    assert 4000 < drift["ts"] < min(raised, default=7200)  # type: ignore[operator]
    assert pipe.registry.value("drift_events_total") == 1
    assert pipe.registry.value("devices_drifted") == 1
