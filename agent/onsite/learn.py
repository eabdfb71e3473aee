"""Learning a machine's normal from its own baseline, on the gateway: feature rows in, a
verified bundle out.

The rows are taken in time order. The first ones fit the detector; the later ``calibration``
share, which the fit never saw, calibrates the score scale and the thresholds on the scores
onnxruntime gives, as the agent will see them. Levels beyond what those rows can measure come
from the scale's fitted tail (``agent.calibration``). The bundle says it was learned
``on_site`` and carries the same manifest as a trained one.
"""

import hashlib
import math
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata

import numpy as np

from edgewatch.agent.bundle import (
    SCHEMA_VERSION,
    FeatureStats,
    Manifest,
    ModelInfo,
    Tensor,
    Training,
)
from edgewatch.agent.bundle_writer import digest
from edgewatch.agent.calibration import (
    MIN_CALIBRATION_ROWS,
    budget_thresholds,
    fit_scale,
    thin,
)
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.graph import FEATURE_ERROR, INPUT, OPSETS, SCORE
from edgewatch.agent.onsite.detectors import Detector, Gaussian, Kmeans, PcaT2Q
from edgewatch.agent.onsite.settings import MIN_FIT_ROWS, Learning
from edgewatch.agent.parity import DEFAULT_TOLERANCE, compare, with_flips
from edgewatch.agent.regimes import fit_regimes, keys
from edgewatch.agent.scorer import open_session

MODEL_FILE = "model.onnx"


class LearningError(ValueError):
    """A baseline that cannot make a model, and what it would take."""


@dataclass(frozen=True)
class Learned:
    """A learned model, its manifest, and what the user should know about it."""

    model: bytes
    manifest: Manifest
    notes: tuple[str, ...]

    @property
    def files(self) -> dict[str, bytes]:
        return {MODEL_FILE: self.model}


def detector(settings: Learning) -> Detector:
    """A new detector of the kind ``settings`` asks for."""
    if settings.detector == "pca_t2q":
        return PcaT2Q(settings.variance)
    if settings.detector == "kmeans":
        return Kmeans(settings.clusters)
    return Gaussian()


def learn(
    rows: np.ndarray,
    spec: FeatureSpec,
    settings: Learning | None = None,
    name: str = "learned",
    created: datetime | None = None,
    normal: np.ndarray | None = None,
    fit_mask: np.ndarray | None = None,
) -> Learned:
    """A model of the baseline ``rows[n, features]`` (time order) of ``spec``'s features, and
    of the windows an operator labelled ``normal`` (which the calibration never sees).
    ``fit_mask`` leaves rows out of the fit (not out of the calibration). ``LearningError``
    when the rows are too few or not finite."""
    settings = settings or Learning()
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    width = len(spec.feature_names)
    _check(rows, width, settings)
    cut = len(rows) - math.ceil(len(rows) * settings.calibration)
    fitting, held_back = rows[:cut], rows[cut:]
    if fit_mask is not None:
        fitting = fitting[fit_mask[:cut]]
        if len(fitting) < MIN_FIT_ROWS:
            raise LearningError(
                f"{len(fitting)} rows to fit on are too few, of the {cut} fit may take: "
                f"it needs {MIN_FIT_ROWS}"
            )
    labelled = 0 if normal is None else len(normal)
    if normal is not None and labelled:
        _check_labelled(normal, width)
    fitted = detector(settings).fit(fitting, normal)
    model = fitted.onnx()
    native = fitted.score(held_back)
    outputs = open_session(model).run([SCORE], {INPUT: held_back})[0]
    parity = compare(native, outputs, DEFAULT_TOLERANCE)
    scale = fit_scale(outputs)
    thresholds = budget_thresholds(scale, outputs, settings.budget)
    regimes, notes = None, list[str]()
    if settings.regimes:
        try:
            features = keys(spec, settings.regimes)
        except ValueError as e:
            raise LearningError(str(e)) from None
        regimes, notes = fit_regimes(fitting, held_back, outputs, features, settings.regime_count)
    parity = with_flips(parity, native, outputs, thresholds.raw_warning)
    created = created or datetime.now(UTC)
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        name=name,
        version=created.strftime("%Y%m%dT%H%M%SZ"),
        created_at=created,
        edgewatch_version=metadata.version("edgewatch"),
        feature_spec=spec,
        feature_names=spec.feature_names,
        model=ModelInfo(
            kind=fitted.kind,
            file=MODEL_FILE,
            input=Tensor(name=INPUT, dtype="float32", shape=(None, width)),
            outputs=_outputs(fitted, width),
            opsets={domain or "ai.onnx": version for domain, version in OPSETS.items()},
        ),
        score=scale,
        thresholds=thresholds,
        training=Training(
            data_sha256=hashlib.sha256(rows.tobytes()).hexdigest(),
            rows={
                "train": len(fitting),
                "labelled_normal": labelled,
                "validation": len(held_back),
                "validation_anomalous": 0,
            },
            hyperparameters={**fitted.hyperparameters(), "calibration": settings.calibration},
            metrics={},
            parity=parity,
            libraries={
                "python": platform.python_version(),
                **{lib: metadata.version(lib) for lib in ("numpy", "onnxruntime")},
            },
        ),
        feature_stats=FeatureStats.of(fitting),
        regimes=regimes,
        origin="on_site",
        files={MODEL_FILE: digest(model)},
    )
    return Learned(model, manifest, (*thin(thresholds, scale), *notes))


def _check(rows: np.ndarray, width: int, settings: Learning) -> None:
    """``LearningError`` unless ``rows`` are enough finite rows of ``width`` features."""
    if rows.ndim != 2 or rows.shape[1] != width:
        raise LearningError(f"the baseline must be rows of {width} features, got {rows.shape}")
    if not np.isfinite(rows).all():
        raise LearningError("the baseline holds values that are not finite")
    needed = settings.rows_needed()
    if len(rows) < needed:
        raise LearningError(
            f"{len(rows)} baseline rows are too few: a {settings.detector} model needs at least "
            f"{needed} (the later {settings.calibration:.0%} calibrate it, and calibration "
            f"needs {MIN_CALIBRATION_ROWS})"
        )


def _check_labelled(normal: np.ndarray, width: int) -> None:
    if normal.ndim != 2 or normal.shape[1] != width or not np.isfinite(normal).all():
        raise LearningError(f"the windows labelled normal must be finite rows of {width} features")


def _outputs(detector: Detector, width: int) -> tuple[Tensor, ...]:
    score = Tensor(name=SCORE, dtype="float32", shape=(None,))
    if not detector.explains:
        return (score,)
    return score, Tensor(name=FEATURE_ERROR, dtype="float32", shape=(None, width))
