"""K-means: the score is the distance to the nearest centre minus that cluster's radius, so a
row inside any cluster's usual extent scores below zero."""

import numpy as np
import onnx
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

from edgewatch.export.detectors.base import Detector, Progress, float32_rows, quiet
from edgewatch.export.detectors.params import KmeansParams
from edgewatch.export.onnxgraph import Graph


class KmeansDetector(Detector):
    kind = "kmeans"
    params: KmeansParams

    def fit(self, inputs: np.ndarray, progress: Progress = quiet) -> None:
        p = self.params
        rows = float32_rows(inputs)
        progress(f"kmeans: {p.n_clusters} clusters on {len(rows)} rows")
        self.scaler = StandardScaler().fit(rows)
        z = self.scaler.transform(rows)
        self.kmeans = KMeans(n_clusters=min(p.n_clusters, len(rows)), random_state=p.seed).fit(z)
        distances, nearest = self._nearest(z)
        self.radius = np.array(
            [
                np.quantile(distances[nearest == c], p.radius_quantile)
                if (nearest == c).any()
                else 0
                for c in range(self.kmeans.n_clusters)
            ]
        )

    def _nearest(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = np.sqrt(((z[:, None, :] - self.kmeans.cluster_centers_[None]) ** 2).sum(axis=2))
        nearest = d.argmin(axis=1)
        return d[np.arange(len(z)), nearest], nearest

    def score(self, inputs: np.ndarray) -> np.ndarray:
        distance, nearest = self._nearest(self.scaler.transform(float32_rows(inputs)))
        return distance - self.radius[nearest]

    def to_onnx(self, width: int) -> onnx.ModelProto:
        g = Graph(width)
        z = g.standardize(g.as_double(), self.scaler.mean_, self.scaler.scale_)
        z = g.op("Unsqueeze", z, g.const(np.array([1])))
        diff = g.op("Sub", z, g.const(self.kmeans.cluster_centers_))
        squared = g.op("ReduceSum", g.op("Mul", diff, diff), g.const(np.array([2])), keepdims=0)
        distance = g.op("Sqrt", squared)
        nearest = g.op("ArgMin", distance, axis=1, keepdims=1)
        own = g.op("GatherElements", distance, nearest, axis=1)
        radius = g.op("Gather", g.const(self.radius), nearest, axis=0)
        return g.model({"score": g.op("Sub", own, radius)})
