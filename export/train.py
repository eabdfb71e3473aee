"""Training end to end: data -> features -> fit -> ONNX -> parity -> calibration -> bundle."""

import math
import platform
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgewatch.agent.bundle import (
    SCHEMA_VERSION,
    Bundle,
    FeatureStats,
    Manifest,
    ModelInfo,
    Tensor,
    Training,
)
from edgewatch.agent.bundle_writer import digest, write_bundle
from edgewatch.agent.calibration import (
    MIN_CALIBRATION_ROWS,
    ScoreScale,
    Thresholds,
    budget_thresholds,
    f1_thresholds,
    fit_scale,
    thin,
)
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.graph import FEATURE_ERROR, INPUT, SCORE
from edgewatch.agent.model import sequences
from edgewatch.agent.onsite.settings import MIN_FIT_ROWS, rows_needed
from edgewatch.agent.parity import with_flips
from edgewatch.export.config import CsvData, NpyData, SimulatedData, TrainConfig
from edgewatch.export.datasets import (
    DataError,
    Dataset,
    Features,
    features,
    from_simulation,
    load_csv,
    load_npy,
    rows_of,
    split,
)
from edgewatch.export.detectors import build
from edgewatch.export.detectors.base import Detector, Progress, quiet
from edgewatch.export.feedback import Labelled, load_labels
from edgewatch.export.metrics import point_metrics
from edgewatch.export.parity import export_checked
from edgewatch.sim.machine import PROCESS_CHANNELS, simulate_process, simulate_waveform

MODEL_FILE = "model.onnx"
LIBRARIES = (
    "numpy",
    "numba",
    "onnxruntime",
    "onnx",
    "scikit-learn",
    "skl2onnx",
    "tensorflow",
    "tensorflow-cpu",
    "tf2onnx",
)


@dataclass(frozen=True)
class Trained:
    """An ONNX model and its manifest, calibrated on validation rows."""

    model: onnx.ModelProto
    manifest: Manifest


def load_data(config: TrainConfig) -> Dataset:
    source, spec = config.data, config.features
    if isinstance(source, CsvData):
        data = load_csv(
            source.path,
            spec.channels,
            source.delimiter,
            source.timestamp,
            source.label,
            source.columns,
            source.time_order,
        )
    elif isinstance(source, NpyData):
        data = load_npy(source.path, spec.channels, source.columns)
    else:
        return _simulate(source, spec)
    return rows_of(data, source.rows)


def _simulate(source: SimulatedData, spec: FeatureSpec) -> Dataset:
    if spec.kind == "process":
        if len(spec.channels) != len(PROCESS_CHANNELS):
            raise ValueError(f"simulated process data has the channels {PROCESS_CHANNELS}")
        run = simulate_process(source.duration, source.seed, source.faults)
    else:
        assert spec.sample_rate is not None
        run = simulate_waveform(
            source.machine,
            source.duration,
            spec.sample_rate,
            source.seed,
            source.faults,
            channels=len(spec.channels),
        )
    return from_simulation(f"simulated-{source.seed}", run, spec.channels)


def inputs_of(rows: Features, history: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Model inputs from feature rows, labelled by their last row."""
    labels = rows.labels[history - 1 :] if rows.labels is not None else None
    return sequences(rows.rows, history), labels


def fit(
    config: TrainConfig,
    data: Dataset,
    progress: Progress = quiet,
    created: datetime | None = None,
    feedback: Labelled | None = None,
) -> Trained:
    """Train, export, check parity and calibrate; the manifest lists ``model.onnx``. The
    operators' labelled windows in ``feedback`` join the training rows (``normal``) and the
    validation rows (``anomaly``)."""
    spec = config.features
    progress(f"features: {len(spec.feature_names)} per row from {data.name}")
    detector = build(config.model)
    inputs, labels = inputs_of(features(spec, data), detector.history)
    train_rows, validation_rows = split(len(inputs), config.calibration.validation)
    x_train = inputs[train_rows]
    if labels is not None:
        x_train = x_train[labels[train_rows] == 0]
    x_valid = inputs[validation_rows]
    y_valid = labels[validation_rows] if labels is not None else None
    if feedback is not None:
        x_train, x_valid, y_valid = _with_feedback(
            feedback, detector.history, x_train, x_valid, y_valid, progress
        )
    if config.calibration.policy == "f1_optimal" and (y_valid is None or not y_valid.any()):
        raise DataError(
            "calibration.policy f1_optimal needs anomalies among the validation rows: a label "
            "column marking some, or alerts labelled anomaly (--feedback)"
        )
    _enough(
        config,
        len(inputs),
        len(x_train),
        int((y_valid == 0).sum()) if y_valid is not None else len(x_valid),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector.fit(x_train, progress)
    for said in dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught):
        progress(f"warning: while fitting {detector.kind}: {said}")
    width = len(spec.feature_names)
    tolerance = config.calibration.parity_tolerance
    model, native, exported, parity = export_checked(detector, width, x_valid, tolerance, progress)
    scale, thresholds = _calibrated(config, exported, y_valid, progress)
    parity = with_flips(parity, native, exported, thresholds.raw_warning)
    metrics = {}
    if y_valid is not None and y_valid.any():
        metrics = point_metrics(exported, y_valid, thresholds.raw_warning)
    model_bytes = model.SerializeToString()
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        name=config.name,
        version=config.version,
        created_at=created or datetime.now(UTC),
        edgewatch_version=metadata.version("edgewatch"),
        feature_spec=spec,
        feature_names=spec.feature_names,
        model=_model_info(detector, model, width),
        score=scale,
        thresholds=thresholds,
        training=Training(
            data_sha256=data.sha256,
            rows={
                "train": len(x_train),
                "validation": len(x_valid),
                "validation_anomalous": int(y_valid.sum()) if y_valid is not None else 0,
                **(
                    {
                        "feedback_normal": len(feedback.normal),
                        "feedback_anomalous": len(feedback.anomaly),
                    }
                    if feedback is not None
                    else {}
                ),
            },
            hyperparameters=detector.hyperparameters(),
            metrics={k: v for k, v in metrics.items() if math.isfinite(v)},
            parity=parity,
            libraries=_libraries(),
        ),
        feature_stats=FeatureStats.of(x_train if x_train.ndim == 2 else x_train[:, -1]),
        files={MODEL_FILE: digest(model_bytes)},
    )
    return Trained(model, manifest)


def _with_feedback(
    feedback: Labelled,
    history: int,
    x_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray | None,
    progress: Progress,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training and validation rows, and the validation labels, with the labelled
    windows added."""
    if history > 1 and (len(feedback.normal) or len(feedback.anomaly)):
        raise DataError(
            f"the labelled windows are single rows, and this model reads sequences of {history}: "
            "train a model of single rows to learn from them"
        )
    progress(
        f"feedback: {len(feedback.normal)} windows labelled normal join the training rows, "
        f"{len(feedback.anomaly)} labelled anomaly the validation rows"
    )
    labels = np.zeros(len(x_valid), np.int64) if y_valid is None else y_valid
    return (
        np.concatenate([x_train, feedback.normal.astype(x_train.dtype)]),
        np.concatenate([x_valid, feedback.anomaly.astype(x_valid.dtype)]),
        np.concatenate([labels, np.ones(len(feedback.anomaly), labels.dtype)]),
    )


def _calibrated(
    config: TrainConfig, exported: np.ndarray, labels: np.ndarray | None, progress: Progress
) -> tuple[ScoreScale, Thresholds]:
    """The score scale and thresholds from the validation rows' scores, said as progress."""
    normal = exported if labels is None else exported[labels == 0]
    scale = fit_scale(normal)
    budget = config.calibration.budget
    if config.calibration.policy == "f1_optimal" and labels is not None:
        thresholds = f1_thresholds(scale, exported, labels, budget)
    else:
        thresholds = budget_thresholds(scale, normal, budget)
    for note in thin(thresholds, scale):
        progress(f"warning: {note}")
    progress(
        f"calibration: warning {thresholds.warning:.2f} (FAR {thresholds.warning_far:.2%}), "
        f"critical {thresholds.critical:.2f} (FAR {thresholds.critical_far:.2%}) on "
        f"{thresholds.normal_rows} normal validation rows"
    )
    return scale, thresholds


def _enough(config: TrainConfig, rows: int, fitting: int, calibrating: int) -> None:
    """Refuse data too small to fit on, or to calibrate on, saying how many rows it needs."""
    share = config.calibration.validation
    needed = rows_needed(MIN_FIT_ROWS, share)
    if fitting < MIN_FIT_ROWS or calibrating < MIN_CALIBRATION_ROWS:
        raise DataError(
            f"{rows} rows leave {fitting} normal rows to fit on and {calibrating} to calibrate "
            f"on (the last {share:.0%}); training needs {MIN_FIT_ROWS} and "
            f"{MIN_CALIBRATION_ROWS}: at least {needed} normal rows in all"
        )


def _model_info(detector: Detector, model: onnx.ModelProto, width: int) -> ModelInfo:
    """The manifest's description of the exported model's inputs and outputs."""
    history = detector.history
    shape = (None, width) if history == 1 else (None, history, width)
    outputs = [Tensor(name=SCORE, dtype="float32", shape=(None,))]
    if detector.explains:
        outputs.append(Tensor(name=FEATURE_ERROR, dtype="float32", shape=(None, width)))
    return ModelInfo(
        kind=detector.kind,
        file=MODEL_FILE,
        input=Tensor(name=INPUT, dtype="float32", shape=shape),
        outputs=tuple(outputs),
        opsets={o.domain or "ai.onnx": o.version for o in model.opset_import},
        history=history,
        members=tuple(m.kind for m in getattr(detector, "members", ())),
    )


def _libraries() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def train(
    config: TrainConfig,
    out: Path,
    key: Ed25519PrivateKey | None = None,
    progress: Progress = quiet,
    feedback: Sequence[Path] = (),
) -> Bundle:
    """Train from ``config`` (and the labels exported to the CSV files ``feedback``) and write
    a verified bundle to ``out``."""
    labelled = load_labels(feedback, config.features.feature_names) if feedback else None
    trained = fit(config, load_data(config), progress, feedback=labelled)
    bundle = write_bundle(
        out, trained.manifest, {MODEL_FILE: trained.model.SerializeToString()}, key
    )
    progress(f"bundle: {out}{' (signed)' if bundle.signed else ''}")
    return bundle
