"""What every detector offers: fit on normal rows, score natively, export to ONNX."""

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import onnx

from edgewatch.agent.bundle import ModelKind

Progress = Callable[[str], None]


def quiet(_: str) -> None:
    """A progress callback that shows nothing."""


class Detector(ABC):
    """A detector: ``score`` is higher for more anomalous rows, natively and in ONNX.

    Inputs are float32 ``[n, features]``, or ``[n, history, features]`` when ``history > 1``.
    """

    kind: ClassVar[ModelKind]
    history: int = 1
    explains: ClassVar[bool] = False

    def __init__(self, params: Any) -> None:
        self.params = params

    @abstractmethod
    def fit(self, inputs: np.ndarray, progress: Progress = quiet) -> None:
        """Learn normal behaviour from ``inputs``."""

    @abstractmethod
    def score(self, inputs: np.ndarray) -> np.ndarray:
        """The native model's scores, float64 ``[n]``."""

    @abstractmethod
    def to_onnx(self, width: int) -> onnx.ModelProto:
        """The fitted model as ONNX for rows of ``width`` features."""

    def feature_error(self, inputs: np.ndarray) -> np.ndarray:
        """The native per-feature error behind each score, ``[n, features]``, for the
        detectors that explain their scores (``explains``)."""
        raise TypeError(f"{self.kind} does not explain its scores")

    def hyperparameters(self) -> dict[str, str | int | float | bool | None]:
        """The parameters as flat JSON values, for the manifest."""
        return {
            k: v if v is None or isinstance(v, str | int | float | bool) else str(v)
            for k, v in self.params.model_dump().items()
        }


class NegatedSamples(Detector):
    """A detector whose scikit-learn ``model`` rates rows with ``score_samples``, higher for
    more normal ones: its score is their negation."""

    model: Any

    def score(self, inputs: np.ndarray) -> np.ndarray:
        return -np.asarray(self.model.score_samples(float32_rows(inputs)))


def float32_rows(inputs: np.ndarray) -> np.ndarray:
    """The dtype every model is fed, as the gateway feeds it."""
    return np.ascontiguousarray(inputs, dtype=np.float32)
