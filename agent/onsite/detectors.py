"""Detectors the gateway fits itself, in NumPy alone, each written as an ONNX graph.

Every one standardizes the features on its fitting rows (a constant feature keeps a scale of 1),
computes in float64 like its graph, and scores higher for more anomalous rows:

- ``gaussian``: the squared Mahalanobis distance under a covariance shrunk towards a multiple of
  the identity by Ledoit and Wolf's (2004) rule, so it stays well conditioned with few rows;
- ``pca_t2q``: Hotelling's T² in the principal subspace that keeps ``variance`` of the variance,
  and Q, the squared residual outside it, each divided by its 99th percentile on the fitting
  rows; the score is the larger, and each feature's share of Q explains it;
- ``kmeans``: for machines with several operating regimes, k-means++ then Lloyd's iterations
  on at most ``SAMPLE`` of the rows, until at most one row in ``1 / STABLE`` changes cluster
  (or ``MAX_ITERATIONS``); the distance to each centre is divided by that cluster's
  95th-percentile radius over all the rows, and the score is the smallest ratio.

Windows an operator labelled normal (``fit(rows, normal)``) make a second, ``Known`` part of
the model: a Gaussian around their mean, whose covariance is theirs plus the fitting rows' (so
it is never narrower than the machine's own noise in any direction). A row scores the lesser of
the detector's score and its squared distance under that Gaussian, the latter brought to the
detector's units by the ratio of the two scores' 99th percentiles on the fitting rows.
"""

from abc import ABC, abstractmethod
from typing import ClassVar, Literal

import numpy as np

from edgewatch.agent.graph import FEATURE_ERROR, SCORE, Graph

Kind = Literal["gaussian", "pca_t2q", "kmeans"]
LIMIT_QUANTILE = 0.99
RADIUS_QUANTILE = 0.95
MAX_ITERATIONS = 100
STABLE = 1e-4
SAMPLE = 10_000


class Detector(ABC):
    """Fit on normal rows ``[n, features]``; score natively and as ONNX alike."""

    kind: ClassVar[Kind]
    explains: ClassVar[bool] = False

    known: "Known | None" = None

    def fit(self, rows: np.ndarray, normal: np.ndarray | None = None) -> "Detector":
        """Fit on ``rows``, and on the windows labelled ``normal`` if any."""
        x = np.asarray(rows, dtype=np.float64)
        self.mean = x.mean(axis=0)
        std = x.std(axis=0)
        self.scale = np.where(std > 1e-12 * np.maximum(np.abs(self.mean), 1.0), std, 1.0)
        z = (x - self.mean) / self.scale
        self._fit(z)
        if normal is not None and len(normal):
            labelled = (np.asarray(normal, dtype=np.float64) - self.mean) / self.scale
            self.known = Known.of(z, labelled, self._score(z))
        return self

    @abstractmethod
    def _fit(self, z: np.ndarray) -> None:
        """Learn from standardized rows."""

    @abstractmethod
    def _score(self, z: np.ndarray) -> np.ndarray:
        """Scores of standardized rows."""

    @abstractmethod
    def _graph(self, g: Graph, z: str) -> dict[str, str]:
        """The graph's outputs from the standardized input ``z``."""

    def hyperparameters(self) -> dict[str, str | int | float | bool | None]:
        return {}

    def score(self, rows: np.ndarray) -> np.ndarray:
        """The native scores of float32 rows, as the gateway feeds them, in float64."""
        x = np.asarray(rows, dtype=np.float32).astype(np.float64)
        z = (x - self.mean) / self.scale
        scores = self._score(z)
        return scores if self.known is None else np.minimum(scores, self.known.score(z))

    def onnx(self) -> bytes:
        g = Graph(len(self.mean))
        z = g.standardize(g.as_double(), self.mean, self.scale)
        outputs = self._graph(g, z)
        if self.known is not None:
            score = g.op("Reshape", outputs[SCORE], g.const(np.array([-1])))
            outputs[SCORE] = g.op("Min", score, self.known.graph(g, z))
        return g.serialize(outputs)


class Known:
    """The windows labelled normal, as a Gaussian in the detector's standardized units."""

    def __init__(self, centre: np.ndarray, whiten: np.ndarray, factor: float, rows: int):
        self.centre, self.whiten, self.factor, self.rows = centre, whiten, factor, rows

    @classmethod
    def of(cls, z: np.ndarray, labelled: np.ndarray, scores: np.ndarray) -> "Known":
        """From the standardized fitting rows ``z`` and their ``scores``, and the labelled
        rows."""
        own, _ = shrunk_covariance(z - z.mean(axis=0))
        spread = np.cov(labelled, rowvar=False, bias=True) if len(labelled) > 1 else 0.0
        reference = np.square(z @ _whitening(own)).sum(axis=1)
        factor = float(np.quantile(scores, LIMIT_QUANTILE)) / max(
            float(np.quantile(reference, LIMIT_QUANTILE)), 1e-12
        )
        return cls(labelled.mean(axis=0), _whitening(own + spread), factor, len(labelled))

    def score(self, z: np.ndarray) -> np.ndarray:
        w = (z - self.centre) @ self.whiten
        scores: np.ndarray = self.factor * np.square(w).sum(axis=1)
        return scores

    def graph(self, g: Graph, z: str) -> str:
        w = g.op("MatMul", g.op("Sub", z, g.const(self.centre)), g.const(self.whiten))
        squared = g.op("ReduceSum", g.op("Mul", w, w), g.const(np.array([1])), keepdims=0)
        return g.op("Mul", squared, g.const(np.array(self.factor)))


def _whitening(covariance: np.ndarray) -> np.ndarray:
    """``W`` with ``W Wᵀ`` the inverse of ``covariance`` (its tiny eigenvalues floored)."""
    values, vectors = np.linalg.eigh(covariance)
    floor = max(float(values.max()), 1e-12) * 1e-9
    whiten: np.ndarray = vectors / np.sqrt(np.maximum(values, floor))
    return whiten


def shrunk_covariance(z: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit and Wolf's shrunk covariance of centred rows, and the shrinkage it chose."""
    n, p = z.shape
    sample = z.T @ z / n
    mu = float(np.trace(sample)) / p
    squared = z**2
    beta = float(((squared.T @ squared) / n - sample**2).sum()) / n
    delta = float(((sample - mu * np.eye(p)) ** 2).sum())
    shrinkage = 0.0 if delta <= 0 else min(beta / delta, 1.0)
    return (1 - shrinkage) * sample + shrinkage * mu * np.eye(p), shrinkage


class Gaussian(Detector):
    kind = "gaussian"

    def _fit(self, z: np.ndarray) -> None:
        covariance, self.shrinkage = shrunk_covariance(z)
        self.whiten = _whitening(covariance)

    def _score(self, z: np.ndarray) -> np.ndarray:
        w: np.ndarray = z @ self.whiten
        squared: np.ndarray = np.square(w).sum(axis=1)
        return squared

    def _graph(self, g: Graph, z: str) -> dict[str, str]:
        w = g.op("MatMul", z, g.const(self.whiten))
        return {SCORE: g.op("ReduceSum", g.op("Mul", w, w), g.const(np.array([1])))}

    def hyperparameters(self) -> dict[str, str | int | float | bool | None]:
        return {"shrinkage": round(self.shrinkage, 6)}


class PcaT2Q(Detector):
    kind = "pca_t2q"
    explains = True

    def __init__(self, variance: float = 0.9) -> None:
        self.variance = variance

    def _fit(self, z: np.ndarray) -> None:
        n, width = z.shape
        values, vectors = np.linalg.eigh(z.T @ z / max(n - 1, 1))
        values, vectors = np.maximum(values[::-1], 0.0), vectors[:, ::-1]
        share = np.cumsum(values) / max(float(values.sum()), 1e-300)
        k = min(int(np.searchsorted(share, self.variance - 1e-12)) + 1, width)
        self.components = vectors[:, :k].T.copy()
        self.variances = np.maximum(values[:k], 1e-12 * max(float(values[0]), 1e-300))
        self.t2_limit, self.q_limit = 1.0, 1.0
        t2, error = self._statistics(z)
        self.t2_limit = max(float(np.quantile(t2, LIMIT_QUANTILE)), 1e-12)
        self.q_limit = max(float(np.quantile(error.sum(axis=1), LIMIT_QUANTILE)), 1e-12)

    def _statistics(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = z @ self.components.T
        residual = z - t @ self.components
        t2 = (t**2 / self.variances).sum(axis=1) / self.t2_limit
        return t2, residual**2 / self.q_limit

    def _score(self, z: np.ndarray) -> np.ndarray:
        t2, error = self._statistics(z)
        score: np.ndarray = np.maximum(t2, error.sum(axis=1))
        return score

    def _graph(self, g: Graph, z: str) -> dict[str, str]:
        t = g.op("MatMul", z, g.const(self.components.T.copy()))
        residual = g.op("Sub", z, g.op("MatMul", t, g.const(self.components)))
        weights = 1 / (self.variances * self.t2_limit)
        t2 = g.op(
            "ReduceSum", g.op("Mul", g.op("Mul", t, t), g.const(weights)), g.const(np.array([1]))
        )
        error = g.op("Div", g.op("Mul", residual, residual), g.const(np.array(self.q_limit)))
        q = g.op("ReduceSum", error, g.const(np.array([1])))
        return {SCORE: g.op("Max", t2, q), FEATURE_ERROR: error}

    def hyperparameters(self) -> dict[str, str | int | float | bool | None]:
        return {"variance": self.variance, "components": len(self.components)}


class Kmeans(Detector):
    kind = "kmeans"

    def __init__(self, clusters: int = 3, seed: int = 0) -> None:
        self.clusters = clusters
        self.seed = seed

    def _fit(self, rows: np.ndarray) -> None:
        rng = np.random.default_rng(self.seed)
        sample = rng.choice(len(rows), SAMPLE, replace=False) if len(rows) > SAMPLE else None
        z = rows if sample is None else rows[np.sort(sample)]
        k = min(self.clusters, len(z))
        norms = (z * z).sum(axis=1)
        centres = z[[int(rng.integers(len(z)))]]
        while len(centres) < k:
            nearest = _squared_distances(z, centres, norms).min(axis=1)
            total = float(nearest.sum())
            if total <= 0:
                break
            centres = np.vstack([centres, z[rng.choice(len(z), p=nearest / total)]])
        assigned = np.full(len(z), -1)
        for _ in range(MAX_ITERATIONS):
            moved = _squared_distances(z, centres, norms).argmin(axis=1)
            if (moved != assigned).sum() <= STABLE * len(z):
                break
            assigned = moved
            members = np.zeros((len(z), len(centres)))
            members[np.arange(len(z)), assigned] = 1.0
            counts = members.sum(axis=0)
            sums = members.T @ z
            centres = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres)
        self.centres = centres
        distances = np.sqrt(_squared_distances(rows, centres))
        assigned = distances.argmin(axis=1)
        self.radius = np.array(
            [
                max(float(np.quantile(distances[assigned == c, c], RADIUS_QUANTILE)), 1e-6)
                if (assigned == c).any()
                else 1.0
                for c in range(len(centres))
            ]
        )

    def _score(self, z: np.ndarray) -> np.ndarray:
        ratio = np.sqrt(_squared_distances(z, self.centres)) / self.radius
        nearest: np.ndarray = np.min(ratio, axis=1)
        return nearest

    def _graph(self, g: Graph, z: str) -> dict[str, str]:
        diff = g.op("Sub", g.op("Unsqueeze", z, g.const(np.array([1]))), g.const(self.centres))
        squared = g.op("ReduceSum", g.op("Mul", diff, diff), g.const(np.array([2])), keepdims=0)
        ratio = g.op("Div", g.op("Sqrt", squared), g.const(self.radius))
        return {SCORE: g.op("ReduceMin", ratio, axes=[1], keepdims=0)}

    def hyperparameters(self) -> dict[str, str | int | float | bool | None]:
        return {"clusters": len(self.centres), "seed": self.seed}


def _squared_distances(
    z: np.ndarray, centres: np.ndarray, norms: np.ndarray | None = None
) -> np.ndarray:
    """``[n, k]`` squared distances, without an ``[n, k, features]`` intermediate; ``norms``,
    each row's squared length, when already known."""
    norms = (z * z).sum(axis=1) if norms is None else norms
    squared = norms[:, None] - z @ (2 * centres.T) + (centres * centres).sum(axis=1)
    distances: np.ndarray = np.maximum(squared, 0.0)
    return distances
