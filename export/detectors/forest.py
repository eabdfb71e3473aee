"""Isolation Forest, with a compact ONNX export.

skl2onnx writes a 100-tree forest as thousands of nodes (a tree ensemble, then per-tree path
arithmetic) that score one row in about a millisecond. The compact export is one
``TreeEnsembleRegressor`` node whose leaves carry their tree's share of the normalised path
length, ``(depth + c(leaf samples)) / (trees * c(max_samples))``; summed over trees that is
``E[h(x)] / c(psi)``, and the score is ``2 ** -sum``: scikit-learn's ``-score_samples``.

scikit-learn compares float32 features with float64 thresholds. Rounding each threshold down to
float32 keeps every comparison's outcome, so rows take the same paths as in scikit-learn.

A forest isolates every row beyond the training data's range at the first splits, so all far
anomalies get about the same path length. The score adds how far a row lies outside the
training rows' box, feature by feature in units of each feature's range: zero inside it, so the
forest alone orders the rows there, and growing without end outside.
"""

import numpy as np
import onnx
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length

from edgewatch.export.detectors.base import NegatedSamples, Progress, float32_rows, quiet
from edgewatch.export.detectors.params import IsolationForestParams
from edgewatch.export.onnxgraph import Graph, from_sklearn


class IsolationForestDetector(NegatedSamples):
    kind = "isolation_forest"
    params: IsolationForestParams

    def fit(self, inputs: np.ndarray, progress: Progress = quiet) -> None:
        p = self.params
        progress(f"isolation_forest: growing {p.n_estimators} trees on {len(inputs)} rows")
        max_samples: int | str = p.max_samples
        if isinstance(max_samples, int):
            max_samples = min(max_samples, len(inputs))
        self.model = IsolationForest(
            n_estimators=p.n_estimators,
            max_samples=max_samples,
            max_features=p.max_features,
            random_state=p.seed,
        ).fit(float32_rows(inputs))
        rows = float32_rows(inputs).astype(np.float64)
        self.low, high = rows.min(axis=0), rows.max(axis=0)
        self.span = np.where(high > self.low, high - self.low, 1.0)
        self.high = high

    def score(self, inputs: np.ndarray) -> np.ndarray:
        rows = float32_rows(inputs).astype(np.float64)
        outside = np.maximum(rows - self.high, 0) + np.maximum(self.low - rows, 0)
        return super().score(inputs) + (outside / self.span).sum(axis=1)

    def to_onnx(self, width: int) -> onnx.ModelProto:
        if self.params.converter == "skl2onnx":
            # skl2onnx gives decision_function: score_samples minus offset_.
            forest = from_sklearn(self.model, width, shift=-float(self.model.offset_))
        else:
            forest = compact_forest(self.model, width)
        g = Graph(width)
        inside = g.embed(forest, "forest_")
        x = g.as_double()
        zero = g.const(np.array(0.0))
        above = g.op("Max", g.op("Sub", x, g.const(self.high)), zero)
        below = g.op("Max", g.op("Sub", g.const(self.low), x), zero)
        outside = g.op("Div", g.op("Add", above, below), g.const(self.span))
        beyond = g.op("ReduceSum", outside, g.const(np.array([1])), keepdims=0)
        return g.model({"score": g.op("Add", g.op("Cast", inside, to=11), beyond)})


def compact_forest(forest: IsolationForest, width: int) -> onnx.ModelProto:
    """``forest`` as one TreeEnsembleRegressor node and ``2 ** -x``; see the module docstring."""
    trees = len(forest.estimators_)
    scale = trees * float(_average_path_length([forest.max_samples_])[0])
    nodes: dict[str, list[int | float | str]] = {
        key: []
        for key in (
            "nodes_treeids",
            "nodes_nodeids",
            "nodes_featureids",
            "nodes_values",
            "nodes_modes",
            "nodes_truenodeids",
            "nodes_falsenodeids",
            "target_treeids",
            "target_nodeids",
            "target_ids",
            "target_weights",
        )
    }
    for t, (estimator, features) in enumerate(
        zip(forest.estimators_, forest.estimators_features_, strict=True)
    ):
        tree = estimator.tree_
        left, right = tree.children_left, tree.children_right
        depth = np.zeros(tree.node_count, dtype=np.int64)
        for i in range(tree.node_count):
            if left[i] >= 0:
                depth[left[i]] = depth[right[i]] = depth[i] + 1
        leaf = left < 0
        path = depth + _average_path_length(tree.n_node_samples)
        thresholds = np.where(leaf, 0.0, tree.threshold)
        rounded = thresholds.astype(np.float32)
        above = rounded.astype(np.float64) > thresholds
        rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
        ids = np.arange(tree.node_count)
        nodes["nodes_treeids"] += [t] * tree.node_count
        nodes["nodes_nodeids"] += ids.tolist()
        nodes["nodes_featureids"] += np.where(leaf, 0, features[tree.feature]).tolist()
        nodes["nodes_values"] += rounded.tolist()
        nodes["nodes_modes"] += np.where(leaf, "LEAF", "BRANCH_LEQ").tolist()
        nodes["nodes_truenodeids"] += np.where(leaf, 0, left).tolist()
        nodes["nodes_falsenodeids"] += np.where(leaf, 0, right).tolist()
        nodes["target_treeids"] += [t] * int(leaf.sum())
        nodes["target_nodeids"] += ids[leaf].tolist()
        nodes["target_ids"] += [0] * int(leaf.sum())
        nodes["target_weights"] += (path[leaf] / scale).tolist()
    g = Graph(width)
    normalised_depth = g.op(
        "TreeEnsembleRegressor",
        g.input,
        domain="ai.onnx.ml",
        n_targets=1,
        aggregate_function="SUM",
        post_transform="NONE",
        **nodes,
    )
    two = g.const(np.array(2.0), floats=np.float32)
    return g.model({"score": g.op("Pow", two, g.op("Neg", normalised_depth))})
