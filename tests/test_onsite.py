"""On-site learning as the gateway runs it: NumPy detectors written as ONNX without the onnx
package, the calibrated scale's fitted tail, and the learner's promises on new normal data."""

import copy
import json

import numpy as np
import pytest

from edgewatch.agent.bundle_writer import write_bundle
from edgewatch.agent.calibration import MIN_CALIBRATION_ROWS, fit_scale, fit_tail
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.graph import INPUT, SCORE, Graph
from edgewatch.agent.onsite.detectors import Gaussian, Kmeans, PcaT2Q
from edgewatch.agent.onsite.learn import LearningError, learn
from edgewatch.agent.onsite.settings import Learning
from edgewatch.agent.scorer import Scorer, open_session
from tests.conftest import edgewatch

KINDS = ("gaussian", "pca_t2q", "kmeans")
SPEC = FeatureSpec(kind="record", channels=[f"c{i}" for i in range(6)])


def _normal(n: int, seed: int) -> np.ndarray:
    """Correlated rows from two operating regimes, the same mixing for every seed."""
    mixing = np.random.default_rng(99).normal(size=(6, 6))
    rng = np.random.default_rng(seed)
    regime = rng.integers(2, size=(n, 1)) * 4.0
    return (rng.normal(size=(n, 6)) @ mixing + regime).astype(np.float32)


def test_a_graph_of_every_attribute_type_runs_in_onnxruntime():
    g = Graph(width=3)
    x = g.as_double()
    clipped = g.op("Clip", x, g.const(np.array(-1.0)), g.const(np.array(1.0)))
    smallest = g.op("ReduceMin", clipped, axes=[1], keepdims=0)
    leaky = g.op("LeakyRelu", smallest, alpha=0.5)
    model = g.serialize({SCORE: leaky})
    rows = np.array([[0.5, -3.0, 2.0], [4.0, 0.25, 1.0]], np.float32)
    got = open_session(model).run([SCORE], {INPUT: rows})[0]
    np.testing.assert_allclose(got, [-0.5, 0.25])


@pytest.mark.parametrize("detector", [Gaussian(), PcaT2Q(), Kmeans(clusters=2)], ids=KINDS)
def test_each_detector_scores_alike_natively_and_in_onnx_and_ranks_anomalies_higher(detector):
    detector.fit(_normal(2000, 0))
    rows = np.vstack([_normal(500, 1), _normal(50, 2) + 25.0])
    native = detector.score(rows)
    exported = open_session(detector.onnx()).run([SCORE], {INPUT: rows})[0]
    np.testing.assert_allclose(exported, native, rtol=1e-5, atol=1e-6 * native.std())
    assert native[500:].min() > np.quantile(native[:500], 0.999)
    far = np.vstack([_normal(10, 3) + 25.0, _normal(10, 3) + 250.0])
    assert (detector.score(far)[10:] > detector.score(far)[:10]).all()


@pytest.mark.parametrize("detector", [Gaussian(), PcaT2Q(), Kmeans(clusters=2)], ids=KINDS)
def test_windows_labelled_normal_score_low_and_a_fault_elsewhere_stays_high(detector):
    """A third regime the operator called normal: its new rows score like normal ones, in
    ONNX as natively, while rows shifted in another direction still score as anomalies."""
    shift = np.zeros(6, np.float32)
    shift[0] = 12.0
    plain = copy.deepcopy(detector).fit(_normal(2000, 0))
    detector.fit(_normal(2000, 0), _normal(100, 1) + shift)
    regime = _normal(500, 2) + shift
    fault = _normal(500, 3)
    fault[:, 3] += 12.0
    ordinary = _normal(500, 4)
    level = np.quantile(plain.score(ordinary), 0.99)
    assert np.median(plain.score(regime)) > level
    assert np.median(detector.score(regime)) < level
    assert (detector.score(fault) > level).mean() > 0.9
    lowered = plain.score(ordinary) - detector.score(ordinary)
    assert lowered.min() >= 0 and (lowered == 0).mean() > 0.95
    rows = np.vstack([regime, fault, ordinary])
    native = detector.score(rows)
    exported = open_session(detector.onnx()).run([SCORE], {INPUT: rows})[0]
    np.testing.assert_allclose(exported, native, rtol=1e-5, atol=1e-6 * native.std())


def test_the_tail_recovers_a_known_generalized_pareto_distribution():
    rng = np.random.default_rng(5)
    shape, scale = 0.2, 2.0
    sample = np.sort(scale / shape * (rng.uniform(size=50_000) ** -shape - 1))
    tail = fit_tail(sample)
    assert tail is not None and abs(tail.shape - shape) < 0.1
    exact = scale / shape * (1e-4**-shape - 1)
    assert abs(tail.quantile(4.0) - exact) / exact < 0.15
    assert fit_tail(np.sort(rng.normal(size=15))) is None  # too few for 10 peaks and a body
    assert fit_tail(np.ones(1000)) is None


def test_a_scale_from_few_rows_reaches_the_asked_levels_through_its_tail():
    scores = np.random.default_rng(1).normal(size=150)
    scale = fit_scale(scores)
    assert scale.tail is not None and scale.calibrated[-1] == 4.0
    plain = fit_scale(scores, tail=False)
    assert plain.tail is None and plain.calibrated[-1] == pytest.approx(np.log10(151))


@pytest.mark.parametrize("kind", KINDS)
def test_a_learned_warning_flags_about_one_percent_of_new_normal_rows(kind, tmp_path):
    """900 calibration rows measure the 1 % level to within about a third: each seed stays
    within a factor of 2.5 of it, and their median between 0.5 and 2 %."""
    rates = []
    for seed in (10, 20, 30):
        learned = learn(_normal(3000, seed), SPEC, Learning(detector=kind))
        bundle = write_bundle(tmp_path / f"{kind}{seed}", learned.manifest, learned.files)
        assert bundle.manifest.origin == "on_site"
        thresholds = bundle.manifest.thresholds
        assert thresholds.expected_warning_far == pytest.approx(0.01)
        new = Scorer(bundle)(_normal(100_000, seed + 1)).calibrated
        rates.append((new > thresholds.warning).mean())
    assert min(rates) >= 0.004 and max(rates) <= 0.025, rates
    assert 0.005 <= np.median(rates) <= 0.02, rates


def test_learning_refuses_too_few_rows_and_says_how_many_it_needs():
    settings = Learning()
    needed = settings.rows_needed()
    assert needed * settings.calibration >= MIN_CALIBRATION_ROWS
    with pytest.raises(LearningError, match=f"{needed - 1} baseline rows are too few.*{needed}"):
        learn(_normal(needed - 1, 0), SPEC, settings)
    learned = learn(_normal(needed, 0), SPEC, settings)
    assert any("calibration is thin for the warning level 2.00" in n for n in learned.notes)
    bad = _normal(needed, 0)
    bad[7, 2] = np.nan
    with pytest.raises(LearningError, match="not finite"):
        learn(bad, SPEC, settings)
    with pytest.raises(LearningError, match="rows of 6 features"):
        learn(bad[:, :5], SPEC, settings)


@pytest.mark.integration
def test_learn_makes_a_bundle_from_a_recording_and_refuses_a_short_one(tmp_path):
    data = tmp_path / "pump.csv"
    rows = _normal(600, 7)
    lines = ["time;" + ";".join(SPEC.channels) + ";anomaly"]
    lines += [
        f"2026-01-01 00:{i // 60:02}:{i % 60:02};" + ";".join(map(str, r)) + ";0"
        for i, r in enumerate(rows)
    ]
    data.write_text("\n".join(lines) + "\n")
    out = edgewatch(
        "learn", "--data", data, "-o", tmp_path / "bundle", "--features", _record(tmp_path)
    )
    assert "gaussian on 420 rows of 6 features, calibrated on the next 180" in out.stdout
    assert "calibration is thin" in out.stderr
    short = edgewatch("learn", "--data", data, "--rows", ":100", "-o", tmp_path / "b", check=False)
    assert short.returncode == 2 and "100 baseline rows are too few" in short.stderr
    bad = edgewatch("learn", "--data", data, "--rows", "7", "-o", tmp_path / "b", check=False)
    assert bad.returncode == 2 and "START:END" in bad.stderr
    named = edgewatch(
        "learn", "--data", data, "--columns", "c0,x", "-o", tmp_path / "b", check=False
    )
    assert named.returncode == 2 and "no column 'x'" in named.stderr
    assert "Traceback" not in short.stderr + bad.stderr + named.stderr


def _record(folder):  # type: ignore[no-untyped-def]
    spec = folder / "features.toml"
    spec.write_text('kind = "record"\n')
    return spec


@pytest.mark.integration
def test_replay_learns_on_site_then_prints_every_rows_score_at_the_files_own_times(tmp_path):
    data = tmp_path / "pump.csv"
    rows = _normal(900, 8)
    rows[700:] += 40.0  # a fault in the last rows
    times = [1_700_000_000 + i + (100 if i >= 500 else 0) for i in range(900)]  # a gap at 500
    lines = ["ts," + ",".join(SPEC.channels)]
    lines += [f"{t}," + ",".join(map(str, r)) for t, r in zip(times, rows, strict=True)]
    data.write_text("\n".join(lines) + "\n")
    config = tmp_path / "replay.toml"
    channels = json.dumps(list(SPEC.channels))
    decision = "[decision]\nwarmup_windows = 0\nn = 2\nm = 2\n"
    config.write_text(f'{decision}[features]\nkind = "record"\nchannels = {channels}\n')
    out = edgewatch("replay", "--data", data, "--learn", "400", "--scores", "--config", config)
    printed = [json.loads(line) for line in out.stdout.splitlines()]
    scores = [p for p in printed if "score" in p and "alert_id" not in p]
    alerts = [p for p in printed if "alert_id" in p]
    assert len(scores) == 500 and scores[0]["ts"] == times[400] and scores[-1]["ts"] == times[-1]
    assert scores[100]["ts"] == times[500] == scores[99]["ts"] + 101
    assert alerts[0]["state"] == "raised" and alerts[0]["started_at"].startswith("2023-11-14T22:")
    assert '"event": "learned"' in out.stderr and "900 samples, 500 scored" in out.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[decision]\nn = 9\nm = 2\n")
    refused = edgewatch("replay", "--data", data, "--learn", "400", "--config", bad, check=False)
    assert refused.returncode == 2 and "n (9) of m (2)" in refused.stderr
