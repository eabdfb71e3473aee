"""ONNX models for training: the gateway's graph builder (``agent.graph``) checked by ``onnx``,
and converters' models brought to the same opsets and outputs."""

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType

from edgewatch.agent import graph as agent_graph
from edgewatch.agent.graph import INPUT, IR_VERSION, OPSETS, SCORE


class Graph(agent_graph.Graph):
    """The gateway's graph builder (``agent.graph``), giving checked ``onnx`` models and able to
    embed a converter's model.

    >>> g = Graph(width=2)
    >>> total = g.op("ReduceSum", g.input, g.const(np.array([1])), keepdims=0)
    >>> model = g.model({SCORE: total})
    >>> [o.name for o in model.graph.output]
    ['score']
    """

    def embed(self, model: onnx.ModelProto, prefix: str) -> str:
        """Another model's graph, fed from this input, with its names prefixed; returns the name
        of its score."""
        graph = compose.add_prefix(model, prefix).graph
        self.nodes.append(agent_graph.node("Identity", [self.input], [prefix + INPUT]))
        self.nodes += [n.SerializeToString() for n in graph.node]
        self.initializers += [t.SerializeToString() for t in graph.initializer]
        return prefix + SCORE

    def model(self, outputs: dict[str, str]) -> onnx.ModelProto:
        """The finished model, checked; each output is cast to float32, ``score`` flattened to
        ``[n]``."""
        model = onnx.load_from_string(self.serialize(outputs))
        onnx.checker.check_model(model, full_check=True)
        return model


def finish(graph: onnx.GraphProto) -> onnx.ModelProto:
    """A checked model at the pinned opsets, for any graph built here or by a converter."""
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(domain, v) for domain, v in OPSETS.items()],
        producer_name="edgewatch",
    )
    model.ir_version = IR_VERSION
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
