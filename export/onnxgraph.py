"""Building ONNX graphs by hand, with the opsets pinned once for every exported model.

Every model edgewatch exports takes one float32 input named ``features``, ``[n, features]`` (or
``[n, history, features]`` for sequence models), and gives ``score``, float32 ``[n]``, where
higher is more anomalous; models that explain their score add ``feature_error``, ``[n, features]``.
"""

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType

OPSET = 17
ML_OPSET = 3
OPSETS = {"": OPSET, "ai.onnx.ml": ML_OPSET}
INPUT = "features"
SCORE = "score"
FEATURE_ERROR = "feature_error"


class Graph:
    """A graph under construction: constants and nodes, each named automatically.

    >>> g = Graph(width=2)
    >>> total = g.op("ReduceSum", g.input, g.const(np.array([1])), keepdims=0)
    >>> model = g.model({SCORE: total})
    >>> [o.name for o in model.graph.output]
    ['score']
    """

    def __init__(self, width: int, history: int = 1) -> None:
        self.width = width
        self.history = history
        self.input = INPUT
        self._nodes: list[onnx.NodeProto] = []
        self._initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, value: np.ndarray, floats: type[np.floating] = np.float64) -> str:
        """A constant; floating-point values become ``floats``."""
        name = self._name("c")
        array = np.asarray(value)
        if array.dtype.kind == "f":
            array = array.astype(floats)
        self._initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, *inputs: str, domain: str = "", **attrs: object) -> str:
        output = self._name(op_type.lower())
        self._nodes.append(
            helper.make_node(op_type, list(inputs), [output], domain=domain, **attrs)
        )
        return output

    def embed(self, model: onnx.ModelProto, prefix: str) -> str:
        """Another model's graph, fed from this input, with its names prefixed; returns the name
        of its score."""
        graph = compose.add_prefix(model, prefix).graph
        self._nodes.append(helper.make_node("Identity", [self.input], [prefix + INPUT]))
        self._nodes += graph.node
        self._initializers += graph.initializer
        return prefix + SCORE

    def as_double(self) -> str:
        """The input in float64: small dense models compute in it, as their native model does."""
        return self.op("Cast", self.input, to=TensorProto.DOUBLE)

    def standardize(self, x: str, mean: np.ndarray, scale: np.ndarray) -> str:
        return self.op("Div", self.op("Sub", x, self.const(mean)), self.const(scale))

    def model(self, outputs: dict[str, str]) -> onnx.ModelProto:
        """The finished model; each output is cast to float32, ``score`` flattened to ``[n]``."""
        values = []
        for name, tensor in outputs.items():
            if name == SCORE:
                tensor = self.op("Reshape", tensor, self.const(np.array([-1], dtype=np.int64)))
                shape: list[int | None] = [None]
            else:
                shape = [None, self.width]
            self._nodes.append(helper.make_node("Cast", [tensor], [name], to=TensorProto.FLOAT))
            values.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        input_shape = [None, self.width] if self.history == 1 else [None, self.history, self.width]
        graph = helper.make_graph(
            self._nodes,
            "edgewatch",
            [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, input_shape)],
            values,
            initializer=self._initializers,
        )
        return finish(graph)


def finish(graph: onnx.GraphProto) -> onnx.ModelProto:
    """A checked model at the pinned opsets, for any graph built here or by a converter."""
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(domain, v) for domain, v in OPSETS.items()],
        producer_name="edgewatch",
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def from_sklearn(estimator: object, width: int, shift: float = 0.0) -> onnx.ModelProto:
    """skl2onnx's model of an outlier detector, whose ``scores`` output is higher for normal
    rows, with ``shift - scores`` as ``score``, its only output."""
    graph = to_onnx(
        estimator, initial_types=[(INPUT, FloatTensorType([None, width]))], target_opset=OPSETS
    ).graph
    nodes = [*graph.node, helper.make_node("Neg", ["scores"], ["negated_score"])]
    shape = numpy_helper.from_array(np.array([-1], dtype=np.int64), "score_shape")
    offset = numpy_helper.from_array(np.array(shift, dtype=np.float32), "score_shift")
    nodes.append(helper.make_node("Add", ["negated_score", "score_shift"], ["shifted_score"]))
    nodes.append(helper.make_node("Reshape", ["shifted_score", "score_shape"], ["score_float"]))
    nodes.append(helper.make_node("Cast", ["score_float"], [SCORE], to=TensorProto.FLOAT))
    rebuilt = helper.make_graph(
        nodes,
        graph.name,
        list(graph.input),
        [helper.make_tensor_value_info(SCORE, TensorProto.FLOAT, [None])],
        initializer=[*graph.initializer, shape, offset],
    )
    return finish(rebuilt)
