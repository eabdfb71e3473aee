"""Every detector exported to ONNX scores as its native model does, and higher means anomalous."""

import numpy as np
import onnx
import pytest
from pydantic import TypeAdapter, ValidationError
from sklearn.ensemble import IsolationForest

from edgewatch.agent.graph import INPUT
from edgewatch.agent.parity import DEFAULT_TOLERANCE, ParityError, compare
from edgewatch.agent.scorer import open_session
from edgewatch.export.detectors import build
from edgewatch.export.detectors.forest import compact_forest
from edgewatch.export.detectors.params import DetectorParams

PARAMS = TypeAdapter(DetectorParams)
WIDTH = 6
QUICK_NETWORK = {"epochs": 3, "patience": 0, "validation_split": 0.0}
KINDS = [
    {"kind": "isolation_forest"},
    {"kind": "isolation_forest", "max_features": 0.5, "n_estimators": 50},
    {"kind": "isolation_forest", "converter": "skl2onnx", "n_estimators": 20},
    {"kind": "ocsvm"},
    {"kind": "lof"},
    {"kind": "gmm"},
    {"kind": "gmm", "covariance_type": "tied"},
    {"kind": "gmm", "covariance_type": "diag"},
    {"kind": "gmm", "covariance_type": "spherical"},
    {"kind": "kmeans", "n_clusters": 4},
    {"kind": "pca_t2q"},
    {"kind": "pca_t2q", "variance": 1.0},
    {"kind": "autoencoder", **QUICK_NETWORK},
    {"kind": "ensemble", "members": [{"kind": "pca_t2q"}, {"kind": "isolation_forest"}]},
    {"kind": "ensemble", "combine": "max", "members": [{"kind": "gmm"}, {"kind": "kmeans"}]},
]


def correlated(n: int, seed: int, spread: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(99).normal(size=(WIDTH, WIDTH))
    return (rng.normal(size=(n, WIDTH)) * spread @ mixing + 10).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return correlated(400, 0), correlated(200, 1), correlated(200, 2, spread=4.0)


def onnx_scores(model, inputs, names=("score",)):
    return open_session(model.SerializeToString()).run(list(names), {INPUT: inputs})


@pytest.mark.parametrize("spec", KINDS, ids=lambda s: "-".join(f"{v}" for v in s.values())[:60])
def test_onnx_matches_native_and_ranks_anomalies_higher(spec, data):
    train, normal, shifted = data
    detector = build(PARAMS.validate_python(spec))
    detector.fit(train)
    model = detector.to_onnx(WIDTH)
    rows = np.concatenate([normal, shifted])
    native = detector.score(rows)
    (exported,) = onnx_scores(model, rows)
    assert exported.shape == (len(rows),) and exported.dtype == np.float32
    parity = compare(native, exported)
    assert parity.max_rel_diff <= DEFAULT_TOLERANCE
    assert np.median(native[len(normal) :]) > np.quantile(native[: len(normal)], 0.9)
    if detector.explains:
        (error,) = onnx_scores(model, rows, ("feature_error",))
        np.testing.assert_allclose(error, detector.feature_error(rows), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("spec", KINDS, ids=lambda s: "-".join(f"{v}" for v in s.values())[:60])
def test_scores_keep_ordering_anomalies_far_past_the_threshold(spec, data):
    train, normal, _ = data
    detector = build(PARAMS.validate_python(spec))
    detector.fit(train)
    direction = np.random.default_rng(4).normal(size=WIDTH).astype(np.float32)
    spread = train.std(axis=0)
    far = np.stack([train.mean(axis=0) + k * spread * direction for k in (10, 100, 1000)])
    (scores,) = onnx_scores(detector.to_onnx(WIDTH), far.astype(np.float32))
    assert scores[0] > np.quantile(detector.score(normal), 0.99)
    assert scores[0] < scores[1] < scores[2], scores


def test_compact_forest_equals_score_samples_with_feature_subsets():
    rng = np.random.default_rng(3)
    train = rng.normal(size=(1000, 12)).astype(np.float32)
    rows = (rng.normal(size=(3000, 12)) * 2).astype(np.float32)
    rows[:100] = np.round(rows[:100], 1)
    forest = IsolationForest(n_estimators=60, max_features=0.4, random_state=0).fit(train)
    (exported,) = onnx_scores(compact_forest(forest, 12), rows)
    np.testing.assert_allclose(exported, -forest.score_samples(rows), rtol=2e-6)
    model = compact_forest(forest, 12)
    assert [n.op_type for n in model.graph.node].count("TreeEnsembleRegressor") == 1
    assert len(model.graph.node) <= 5


def test_rows_on_a_threshold_take_scikit_learns_branch():
    train = np.random.default_rng(4).normal(size=(256, 3)).astype(np.float32)
    forest = IsolationForest(n_estimators=10, random_state=0).fit(train)
    thresholds = np.concatenate(
        [e.tree_.threshold[e.tree_.feature >= 0] for e in forest.estimators_]
    )
    on = np.repeat(thresholds.astype(np.float32)[:, None], 3, axis=1)
    on = np.concatenate([on, np.nextafter(on, np.float32(np.inf)), np.nextafter(on, -np.inf)])
    (exported,) = onnx_scores(compact_forest(forest, 3), on)
    np.testing.assert_allclose(exported, -forest.score_samples(on), rtol=2e-6)


def test_sequence_autoencoder_reads_a_history_of_rows():
    rng = np.random.default_rng(5)
    t = np.arange(600)[:, None]
    rows = np.sin(t / 10 + np.arange(WIDTH)) + 0.05 * rng.normal(size=(600, WIDTH))
    windows = np.lib.stride_tricks.sliding_window_view(rows, 8, axis=0).transpose(0, 2, 1)
    windows = np.ascontiguousarray(windows, dtype=np.float32)
    for architecture in ("conv", "lstm"):
        params = {"kind": "sequence_autoencoder", "architecture": architecture, "history": 8}
        detector = build(PARAMS.validate_python({**params, "filters": 8, **QUICK_NETWORK}))
        detector.fit(windows[:400])
        model = detector.to_onnx(WIDTH)
        assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:] == [
            8,
            WIDTH,
        ]
        (exported,) = onnx_scores(model, windows[400:])
        assert compare(detector.score(windows[400:]), exported).max_rel_diff <= DEFAULT_TOLERANCE


def test_parity_gate_refuses_a_model_that_drifts():
    native = np.linspace(0, 1, 100)
    with pytest.raises(ParityError, match=r"differs .* at validation row 7"):
        compare(native, native + np.where(np.arange(100) == 7, 0.01, 0.0))
    with pytest.raises(ParityError):
        compare(native, np.where(np.arange(100) == 3, np.nan, native))


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"kind": "forest"}, "does not match any of the expected tags"),
        ({"kind": "isolation_forest", "n_estimators": 0}, "greater than or equal to 1"),
        ({"kind": "isolation_forest", "max_features": 1.5}, "less than or equal to 1"),
        ({"kind": "ocsvm", "nu": 0}, "greater than 0"),
        ({"kind": "kmeans", "clusters": 3}, "Extra inputs are not permitted"),
        ({"kind": "sequence_autoencoder", "history": 30}, "multiple of 4"),
        ({"kind": "autoencoder", "validation_split": 0}, "patience"),
        ({"kind": "ensemble", "members": [{"kind": "lof"}]}, "at least 2"),
    ],
)
def test_bad_hyperparameters_are_refused(spec, message):
    with pytest.raises(ValidationError, match=message):
        PARAMS.validate_python(spec)


@pytest.mark.parametrize("kind", ["gaussian", "pca_t2q", "kmeans"])
def test_the_gateways_own_models_pass_the_onnx_checker(kind):
    from edgewatch.agent.onsite.learn import detector as new_detector
    from edgewatch.agent.onsite.settings import Learning

    rows = np.random.default_rng(0).normal(size=(300, 5))
    detector = new_detector(Learning(detector=kind)).fit(rows)
    model = onnx.load_from_string(detector.onnx())
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.output[0].name == "score"


def test_the_gateways_shrinkage_is_ledoit_and_wolfs():
    from sklearn.covariance import ledoit_wolf

    from edgewatch.agent.onsite.detectors import shrunk_covariance

    rows = np.random.default_rng(3).normal(size=(40, 12)) @ np.diag(np.arange(1.0, 13.0))
    centred = rows - rows.mean(axis=0)
    covariance, shrinkage = shrunk_covariance(centred)
    expected, expected_shrinkage = ledoit_wolf(centred, assume_centered=True)
    assert shrinkage == pytest.approx(expected_shrinkage)
    np.testing.assert_allclose(covariance, expected)
