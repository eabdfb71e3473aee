"""Kernel and neighbour detectors: One-Class SVM and Local Outlier Factor.

Both are scaled inside a scikit-learn Pipeline. LOF's ``decision_function`` is positive for
normal rows, so its score is the negation, and skl2onnx converts it as it is. The One-Class
SVM's decision function, ``sum_i a_i K(x, s_i) - rho`` with an RBF kernel, levels off at
``-rho`` away from its support vectors, so every far anomaly would score the same; its score is
``log(rho) - log(sum_i a_i K(x, s_i))`` instead, a monotone function of the negated decision
function, so it orders rows exactly as that does, and it keeps growing with the distance. Both
the native score and the graph compute the log of the sum as a log-sum-exp, so it never
underflows.
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
from edgewatch.export.onnxgraph import Graph, from_sklearn


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

    def _terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float]:
        scaler, svm = self.model[0], self.model[-1]
        return (
            scaler.mean_,
            scaler.scale_,
            svm.support_vectors_.astype(np.float64),
            np.log(svm.dual_coef_[0]),
            float(svm._gamma),
            float(svm.offset_[0]),
        )

    def score(self, inputs: np.ndarray) -> np.ndarray:
        mean, scale, vectors, log_a, gamma, rho = self._terms()
        z = (float32_rows(inputs).astype(np.float64) - mean) / scale
        squared = (z * z).sum(axis=1)[:, None] - 2 * z @ vectors.T + (vectors**2).sum(axis=1)
        terms = log_a - gamma * np.maximum(squared, 0.0)
        top = terms.max(axis=1)
        total = top + np.log(np.exp(terms - top[:, None]).sum(axis=1))
        return np.log(rho) - total

    def to_onnx(self, width: int) -> onnx.ModelProto:
        mean, scale, vectors, log_a, gamma, rho = self._terms()
        g = Graph(width)
        z = g.standardize(g.as_double(), mean, scale)
        norms = g.op("ReduceSum", g.op("Mul", z, z), g.const(np.array([1])), keepdims=1)
        cross = g.op("MatMul", z, g.const(-2 * vectors.T))
        squared = g.op("Add", g.op("Add", norms, cross), g.const((vectors**2).sum(axis=1)))
        distance = g.op("Max", squared, g.const(np.array(0.0)))
        terms = g.op("Sub", g.const(log_a), g.op("Mul", distance, g.const(np.array(gamma))))
        total = g.op("ReduceLogSumExp", terms, axes=[1], keepdims=0)
        return g.model({"score": g.op("Sub", g.const(np.array(np.log(rho))), total)})


class LofDetector(_Converted):
    kind = "lof"
    params: LofParams

    def _estimator(self) -> BaseEstimator:
        return LocalOutlierFactor(n_neighbors=self.params.n_neighbors, novelty=True)
