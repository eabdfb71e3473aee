"""PCA with Hotelling's T² and the Q statistic (squared prediction error).

Each statistic is divided by its control limit at ``alpha``: T² by the F-distribution limit for a
new observation, Q by the Jackson-Mudholkar limit from the discarded eigenvalues. The score is the
larger ratio, so 1 is the edge of normal on either; ``feature_error`` is each feature's share of Q
on the same scale.
"""

import numpy as np
import onnx
from scipy import stats
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from edgewatch.agent.graph import FEATURE_ERROR
from edgewatch.export.detectors.base import Detector, Progress, float32_rows, quiet
from edgewatch.export.detectors.params import PcaParams
from edgewatch.export.onnxgraph import Graph


class PcaDetector(Detector):
    kind = "pca_t2q"
    explains = True
    params: PcaParams

    def fit(self, inputs: np.ndarray, progress: Progress = quiet) -> None:
        rows = float32_rows(inputs)
        n, width = rows.shape
        self.scaler = StandardScaler().fit(rows)
        full = PCA().fit(self.scaler.transform(rows))
        share = np.cumsum(full.explained_variance_ratio_)
        k = min(int(np.searchsorted(share, self.params.variance - 1e-12)) + 1, width, n - 2)
        progress(f"pca_t2q: {k} of {width} components keep {share[k - 1]:.1%} of the variance")
        self.mean = full.mean_
        self.components = full.components_[:k]
        self.variances = full.explained_variance_[:k]
        a = self.params.alpha
        self.t2_limit = k * (n - 1) * (n + 1) / (n * (n - k)) * stats.f.ppf(1 - a, k, n - k)
        self.q_limit = _q_limit(full.explained_variance_[k:], a)

    def _statistics(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        centred = self.scaler.transform(float32_rows(inputs)) - self.mean
        t = centred @ self.components.T
        residual = centred - t @ self.components
        t2 = (t**2 / self.variances).sum(axis=1)
        return t2 / self.t2_limit, residual**2 / self.q_limit

    def score(self, inputs: np.ndarray) -> np.ndarray:
        t2, q = self._statistics(inputs)
        return np.maximum(t2, q.sum(axis=1))

    def feature_error(self, inputs: np.ndarray) -> np.ndarray:
        return self._statistics(inputs)[1]

    def to_onnx(self, width: int) -> onnx.ModelProto:
        g = Graph(width)
        z = g.standardize(g.as_double(), self.scaler.mean_, self.scaler.scale_)
        centred = g.op("Sub", z, g.const(self.mean))
        t = g.op("MatMul", centred, g.const(self.components.T.copy()))
        residual = g.op("Sub", centred, g.op("MatMul", t, g.const(self.components)))
        weights = 1 / (self.variances * self.t2_limit)
        t2 = g.op(
            "ReduceSum", g.op("Mul", g.op("Mul", t, t), g.const(weights)), g.const(np.array([1]))
        )
        error = g.op("Div", g.op("Mul", residual, residual), g.const(np.array(self.q_limit)))
        q = g.op("ReduceSum", error, g.const(np.array([1])))
        return g.model({"score": g.op("Max", t2, q), FEATURE_ERROR: error})


def _q_limit(residual_variances: np.ndarray, alpha: float) -> float:
    """Jackson and Mudholkar's (1979) upper limit for Q; infinite when nothing is left over,
    so Q then never raises the score."""
    theta = [float((residual_variances**i).sum()) for i in (1, 2, 3)]
    if theta[0] <= 1e-12 * max(theta[0], 1.0) or theta[1] <= 0:
        return float("inf")
    h0 = 1 - 2 * theta[0] * theta[2] / (3 * theta[1] ** 2)
    c = stats.norm.ppf(1 - alpha)
    inner = (
        c * np.sqrt(2 * theta[1] * h0**2) / theta[0] + 1 + theta[1] * h0 * (h0 - 1) / theta[0] ** 2
    )
    return float(theta[0] * inner ** (1 / h0))
