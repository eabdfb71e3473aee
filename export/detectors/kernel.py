"""Detectors that skl2onnx converts as they are: One-Class SVM and Local Outlier Factor.

Both are scaled inside a scikit-learn Pipeline; their ``decision_function`` is positive for
normal rows, so the score is its negation.
"""

from abc import abstractmethod

import numpy as np
import onnx
from sklearn.base import BaseEstimator
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from edgewatch.export.detectors.base import Detector, Progress, float32_rows, quiet
from edgewatch.export.detectors.params import LofParams, OcsvmParams
from edgewatch.export.onnxgraph import from_sklearn


class _Converted(Detector):
    @abstractmethod
    def _estimator(self) -> BaseEstimator:
        """The unfitted scikit-learn detector."""

    def fit(self, inputs: np.ndarray, progress: Progress = quiet) -> None:
        rows = float32_rows(inputs)
        progress(f"{self.kind}: fitting on {len(rows)} rows")
        self.model: Pipeline = make_pipeline(StandardScaler(), self._estimator()).fit(rows)

    def score(self, inputs: np.ndarray) -> np.ndarray:
        return -np.asarray(self.model.decision_function(float32_rows(inputs)), dtype=np.float64)

    def to_onnx(self, width: int) -> onnx.ModelProto:
        return from_sklearn(self.model, width)


class OcsvmDetector(_Converted):
    kind = "ocsvm"
    params: OcsvmParams

    def _estimator(self) -> BaseEstimator:
        return OneClassSVM(nu=self.params.nu, gamma=self.params.gamma)


class LofDetector(_Converted):
    kind = "lof"
    params: LofParams

    def _estimator(self) -> BaseEstimator:
        return LocalOutlierFactor(n_neighbors=self.params.n_neighbors, novelty=True)
