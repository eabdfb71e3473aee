"""Gaussian mixture: the score is the negative log-likelihood of a row under the mixture."""

import numpy as np
import onnx
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from edgewatch.export.detectors.base import NegatedSamples, Progress, float32_rows, quiet
from edgewatch.export.detectors.params import GmmParams
from edgewatch.export.onnxgraph import Graph


class GmmDetector(NegatedSamples):
    kind = "gmm"
    params: GmmParams

    def fit(self, inputs: np.ndarray, progress: Progress = quiet) -> None:
        p = self.params
        progress(f"gmm: fitting {p.n_components} {p.covariance_type} components")
        self.model: Pipeline = make_pipeline(
            StandardScaler(),
            GaussianMixture(
                n_components=p.n_components,
                covariance_type=p.covariance_type,
                reg_covar=p.reg_covar,
                random_state=p.seed,
            ),
        ).fit(float32_rows(inputs))

    def to_onnx(self, width: int) -> onnx.ModelProto:
        scaler, gmm = self.model[0], self.model[-1]
        k = gmm.n_components
        cholesky = _full_precision_cholesky(gmm, width)
        log_det = np.log(np.diagonal(cholesky, axis1=1, axis2=2)).sum(axis=1)
        offset = log_det - 0.5 * width * np.log(2 * np.pi) + np.log(gmm.weights_)
        g = Graph(width)
        z = g.standardize(g.as_double(), scaler.mean_, scaler.scale_)
        stacked = np.concatenate(list(cholesky), axis=1)
        shift = np.einsum("kf,kfg->kg", gmm.means_, cholesky).reshape(-1)
        y = g.op("Sub", g.op("MatMul", z, g.const(stacked)), g.const(shift))
        y = g.op("Reshape", y, g.const(np.array([-1, k, width], dtype=np.int64)))
        squared = g.op("ReduceSum", g.op("Mul", y, y), g.const(np.array([2])), keepdims=0)
        log_prob = g.op("Add", g.op("Mul", squared, g.const(np.array(-0.5))), g.const(offset))
        peak = g.op("ReduceMax", log_prob, axes=[1], keepdims=1)
        spread = g.op("ReduceSum", g.op("Exp", g.op("Sub", log_prob, peak)), g.const(np.array([1])))
        log_likelihood = g.op("Add", g.op("Log", spread), peak)
        return g.model({"score": g.op("Neg", log_likelihood)})


def _full_precision_cholesky(gmm: GaussianMixture, width: int) -> np.ndarray:
    """The precision Cholesky factors as ``[components, width, width]`` whatever the covariance
    type."""
    chol, k = gmm.precisions_cholesky_, gmm.n_components
    if gmm.covariance_type == "full":
        return np.asarray(chol)
    if gmm.covariance_type == "tied":
        return np.broadcast_to(chol, (k, width, width)).copy()
    if gmm.covariance_type == "diag":
        return np.stack([np.diag(row) for row in chol])
    return np.stack([np.eye(width) * s for s in chol])
