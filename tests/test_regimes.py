"""Operating regimes: a change of speed is not an anomaly, each regime keeps its own promise,
and a regime never seen is reported as such, not scored as a fault."""

import numpy as np
import pytest

from edgewatch.agent.alerts import AlertMaker
from edgewatch.agent.bundle_writer import write_bundle
from edgewatch.agent.config import ConfigError, validate
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.featurizer import recording_features
from edgewatch.agent.framing import Block
from edgewatch.agent.machines import Router
from edgewatch.agent.onsite.learn import learn
from edgewatch.agent.onsite.learner import Learner
from edgewatch.agent.onsite.settings import Learning
from edgewatch.agent.pipeline import Pipeline
from edgewatch.agent.scorer import Scorer
from tests.test_machines import BASE, Kept

CHANNELS = ["speed", "temperature", "vibration"]
SPEC = FeatureSpec(kind="process", channels=CHANNELS)


def _run(speeds: list[tuple[float, int]], seed: int, hot: slice | None = None) -> np.ndarray:
    """Samples ``[3, n]`` at 1 Hz: the speed holds each level for its count of seconds; the
    temperature and vibration follow it, with noise whose size grows with the speed."""
    rng = np.random.default_rng(seed)
    speed = np.concatenate([np.full(n, level) for level, n in speeds])
    temperature = 30 + speed / 100 + rng.normal(0, speed / 2000, len(speed))
    vibration = speed / 500 + rng.normal(0, speed / 5000, len(speed))
    if hot is not None:
        temperature[hot] += 1.5
    return np.stack([speed + rng.normal(0, 2, len(speed)), temperature, vibration])


def _rows(samples: np.ndarray) -> np.ndarray:
    return recording_features(SPEC, np.ascontiguousarray(samples.T))


def _bundle(folder, learned):  # type: ignore[no-untyped-def]
    return write_bundle(folder, learned.manifest, learned.files)


def test_each_regime_keeps_its_own_promise_and_an_unseen_one_has_no_score(tmp_path):
    baseline = _rows(_run([(1000, 400), (1500, 400)] * 8, 0))[30:]
    settings = Learning(regimes=("speed",), regime_count=2)
    learned = learn(baseline, SPEC, settings)
    regimes = learned.manifest.regimes
    assert regimes is not None and len(regimes.centres) == 2 and all(regimes.scales)
    scorer = Scorer(_bundle(tmp_path / "regimes", learned))
    warning = learned.manifest.thresholds.warning
    fresh = _rows(_run([(1000, 400), (1500, 400)] * 60, 1))[30:]
    scores, regime = scorer(fresh).calibrated, regimes.assign(fresh)
    for index in (0, 1):
        mine = scores[regime == index]
        assert len(mine) > 20_000 and 0.004 < np.mean(mine > warning) < 0.03  # 1 %, +-1100 rows
    unseen = scorer(_rows(_run([(2500, 500)], 3))[30:]).calibrated
    assert np.isnan(unseen).all()
    plain = Scorer(_bundle(tmp_path / "plain", learn(baseline, SPEC, Learning())))
    assert np.isfinite(plain(_rows(_run([(2500, 500)], 3))[30:]).calibrated).all()


def test_the_agent_reports_an_unknown_regime_once_and_still_alerts_on_a_fault(tmp_path):
    machine = {
        "name": "pumps",
        "devices": ["pump-*"],
        "learn": {"min_rows": 3900, "duration_s": 0, "regimes": ["speed"], "regime_count": 2},
        "features": SPEC.model_dump(),
    }
    made = validate({**BASE, "machines": [machine], "learning_dir": str(tmp_path)})
    kept, events = Kept(), []
    pipe = Pipeline(None, AlertMaker("s"), [kept], router=Router(made.machines, False, 10))
    pipe.learner = Learner(
        tmp_path, pipe.stream_metrics, lambda r, m: pipe.swap(m, r.key), events.append, inline=True
    )
    pipe.report = events.append
    speeds = [(1000, 500), (1500, 500)] * 4 + [(2500, 600), (1000, 1200), (1500, 600)]
    samples = _run(speeds, 7, hot=slice(5500, 5800))
    for start in range(0, samples.shape[1], 10):
        pipe.process([Block("pump-1", float(start), 1.0, samples[:, start : start + 10], CHANNELS)])
    unknown = [e for e in events if e["event"] == "unknown_regime"]
    assert len(unknown) == 1 and 4000 <= unknown[0]["ts"] < 4100  # type: ignore[operator]
    assert pipe.registry.value("windows_unknown_regime_total") >= 550
    raised = [a.started_at.timestamp() for a in kept.alerts if a.state == "raised"]
    assert raised and all(5500 <= t < 5850 for t in raised)  # the fault, not the new speed


@pytest.mark.parametrize(
    "learn, message",
    [
        ({"regimes": ["rpm"]}, "'rpm' is not a channel of the process features"),
        ({"regimes": ["speed"], "regime_count": 0}, "regime_count"),
    ],
)
def test_regimes_are_checked_against_the_features(learn, message):
    machine = {"name": "m", "devices": ["m"], "learn": learn, "features": SPEC.model_dump()}
    with pytest.raises(ConfigError, match=message):
        validate({**BASE, "machines": [machine]})
