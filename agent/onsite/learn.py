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
from typing import Annotated

import numpy as np
from pydantic import Field, model_validator

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
from edgewatch.agent.onsite.detectors import Detector, Gaussian, Kind, Kmeans, PcaT2Q
from edgewatch.agent.parity import DEFAULT_TOLERANCE, compare, with_flips
from edgewatch.agent.schema import Frozen
from edgewatch.agent.scorer import open_session

MODEL_FILE = "model.onnx"
MIN_FIT_ROWS = 30
Share = Annotated[float, Field(gt=0, lt=1)]


class LearningError(ValueError):
    """A baseline that cannot make a model, and what it would take."""


class Learning(Frozen):
    """How a machine learns its normal: the detector, and the share of the baseline, its
    latest rows, held back to calibrate on. The agent collects ``min_rows`` rows at least,
    over ``duration_s`` at least, while the machine runs."""

    detector: Kind = "gaussian"
    clusters: int = Field(default=3, ge=1, le=64)
    variance: float = Field(default=0.9, gt=0, le=1)
    calibration: float = Field(default=0.3, ge=0.1, le=0.7)
    budget: tuple[Share, Share] = (0.01, 0.001)
    duration_s: float = Field(default=3600.0, ge=0, le=30 * 86_400)
    min_rows: int = Field(default=1000, ge=1, le=1_000_000)
    max_rows: int = Field(default=100_000, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _consistent(self) -> "Learning":
        if self.budget[1] > self.budget[0]:
            raise ValueError(
                "budget is (warning, critical): the critical false-alarm rate must not exceed "
                "the warning one"
            )
        if self.max_rows < self.min_rows:
            raise ValueError(f"max_rows ({self.max_rows}) is below min_rows ({self.min_rows})")
        return self

    def detector_for(self) -> Detector:
        if self.detector == "pca_t2q":
            return PcaT2Q(self.variance)
        if self.detector == "kmeans":
            return Kmeans(self.clusters)
        return Gaussian()

    def rows_needed(self) -> int:
        """The fewest rows a baseline can have: enough to fit, and ``MIN_CALIBRATION_ROWS``
        after them to calibrate on."""
        fit = MIN_FIT_ROWS * (self.clusters if self.detector == "kmeans" else 1)
        return max(
            math.ceil(fit / (1 - self.calibration)),
            math.ceil(MIN_CALIBRATION_ROWS / self.calibration),
        )


@dataclass(frozen=True)
class Learned:
    """A learned model, its manifest, and what the user should know about it."""

    model: bytes
    manifest: Manifest
    notes: tuple[str, ...]

    @property
    def files(self) -> dict[str, bytes]:
        return {MODEL_FILE: self.model}


def learn(
    rows: np.ndarray,
    spec: FeatureSpec,
    settings: Learning | None = None,
    name: str = "learned",
    created: datetime | None = None,
) -> Learned:
    """A model of the baseline ``rows[n, features]`` (time order) of ``spec``'s features;
    ``LearningError`` when the rows are too few or not finite."""
    settings = settings or Learning()
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    width = len(spec.feature_names)
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
    cut = len(rows) - math.ceil(len(rows) * settings.calibration)
    fitting, held_back = rows[:cut], rows[cut:]
    detector = settings.detector_for().fit(fitting)
    model = detector.onnx()
    native = detector.score(held_back)
    outputs = open_session(model).run([SCORE], {INPUT: held_back})[0]
    parity = compare(native, outputs, DEFAULT_TOLERANCE)
    scale = fit_scale(outputs)
    thresholds = budget_thresholds(scale, outputs, settings.budget)
    parity = with_flips(parity, native, outputs, thresholds.raw_warning)
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        name=name,
        version=(created or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ"),
        created_at=created or datetime.now(UTC),
        edgewatch_version=metadata.version("edgewatch"),
        feature_spec=spec,
        feature_names=spec.feature_names,
        model=ModelInfo(
            kind=detector.kind,
            file=MODEL_FILE,
            input=Tensor(name=INPUT, dtype="float32", shape=(None, width)),
            outputs=_outputs(detector, width),
            opsets={domain or "ai.onnx": version for domain, version in OPSETS.items()},
        ),
        score=scale,
        thresholds=thresholds,
        training=Training(
            data_sha256=hashlib.sha256(rows.tobytes()).hexdigest(),
            rows={"train": len(fitting), "validation": len(held_back), "validation_anomalous": 0},
            hyperparameters={**detector.hyperparameters(), "calibration": settings.calibration},
            metrics={},
            parity=parity,
            libraries={
                "python": platform.python_version(),
                **{lib: metadata.version(lib) for lib in ("numpy", "onnxruntime")},
            },
        ),
        feature_stats=FeatureStats.of(fitting),
        origin="on_site",
        files={MODEL_FILE: digest(model)},
    )
    return Learned(model, manifest, thin(thresholds, scale))


def _outputs(detector: Detector, width: int) -> tuple[Tensor, ...]:
    score = Tensor(name=SCORE, dtype="float32", shape=(None,))
    if not detector.explains:
        return (score,)
    return score, Tensor(name=FEATURE_ERROR, dtype="float32", shape=(None, width))
