"""ONNX graphs built and serialized on the gateway, without the ``onnx`` package.

The model is written straight in protobuf's wire format: the few messages a graph of tensor
operators needs (``ModelProto``, ``GraphProto``, ``NodeProto``, ``AttributeProto``,
``TensorProto``, ``ValueInfoProto``), with the field numbers of ``onnx.proto``. Training
(``export.onnxgraph``) builds on the same ``Graph``, and its tests check what it writes with the
``onnx`` checker.

Every model edgewatch writes takes one float32 input named ``features``, ``[n, features]`` (or
``[n, history, features]`` for sequence models), and gives ``score``, float32 ``[n]``, higher
for more anomalous rows; models that explain their score add ``feature_error``,
``[n, features]``.

>>> g = Graph(width=2)
>>> total = g.op("ReduceSum", g.input, g.const(np.array([1])), keepdims=0)
>>> model = g.serialize({SCORE: total})
>>> model[:2], b"ReduceSum" in model
(b'\\x08\\x08', True)
"""

import struct

import numpy as np

OPSET = 17
ML_OPSET = 3
OPSETS = {"": OPSET, "ai.onnx.ml": ML_OPSET}
IR_VERSION = 8
INPUT = "features"
SCORE = "score"
FEATURE_ERROR = "feature_error"

# TensorProto.DataType
FLOAT, INT64, DOUBLE = 1, 7, 11
_DATA_TYPES = {np.dtype(np.float32): FLOAT, np.dtype(np.int64): INT64, np.dtype(np.float64): DOUBLE}
# AttributeProto.AttributeType
_FLOAT, _INT, _STRING, _FLOATS, _INTS, _STRINGS = 1, 2, 3, 6, 7, 8


def _varint(value: int) -> bytes:
    """Protobuf's base-128 varint; a negative int64 as its two's complement in 10 bytes."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def tensor(name: str, array: np.ndarray) -> bytes:
    """A ``TensorProto`` holding ``array`` (float32, float64 or int64) as raw little-endian data."""
    array = np.asarray(array)
    data_type = _DATA_TYPES[array.dtype]
    dims = b"".join(_int(1, d) for d in array.shape)
    raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return dims + _int(2, data_type) + _bytes(8, name) + _bytes(9, raw)


def _float(field: int, value: float) -> bytes:
    return _varint(field << 3 | 5) + struct.pack("<f", value)


def _attribute(name: str, value: object) -> bytes:
    """An ``AttributeProto``: an int, float or string, or a list of one of them."""
    head = _bytes(1, name)
    if isinstance(value, bool | int | np.integer):
        return head + _int(3, int(value)) + _int(20, _INT)
    if isinstance(value, float | np.floating):
        return head + _float(2, float(value)) + _int(20, _FLOAT)
    if isinstance(value, str | bytes):
        return head + _bytes(4, value) + _int(20, _STRING)
    items = list(value) if isinstance(value, list | tuple | np.ndarray) else None
    if items and all(isinstance(v, int | np.integer) for v in items):
        return head + b"".join(_int(8, int(v)) for v in items) + _int(20, _INTS)
    if items and all(isinstance(v, int | float | np.number) for v in items):
        return head + b"".join(_float(7, float(v)) for v in items) + _int(20, _FLOATS)
    if items and all(isinstance(v, str | bytes) for v in items):
        return head + b"".join(_bytes(9, v) for v in items) + _int(20, _STRINGS)
    raise TypeError(f"attribute {name}: {type(value).__name__} is not supported")


def node(
    op_type: str, inputs: list[str], outputs: list[str], domain: str = "", **attrs: object
) -> bytes:
    """A ``NodeProto``."""
    body = b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs)
    body += _bytes(3, outputs[0]) + _bytes(4, op_type)
    body += b"".join(_bytes(5, _attribute(k, v)) for k, v in attrs.items())
    return body + (_bytes(7, domain) if domain else b"")


def value_info(name: str, elem_type: int, shape: list[int | None]) -> bytes:
    """A ``ValueInfoProto`` of a tensor; ``None`` in ``shape`` is the batch axis, ``n``."""
    dims = b"".join(
        _bytes(1, _bytes(2, "n") if d is None else _int(1, d)) for d in shape
    )  # TensorShapeProto.Dimension: dim_param or dim_value
    tensor_type = _int(1, elem_type) + _bytes(2, dims)
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


class Graph:
    """A graph under construction: constants and nodes, each named automatically, kept as
    encoded protobuf messages."""

    def __init__(self, width: int, history: int = 1) -> None:
        self.width = width
        self.history = history
        self.input = INPUT
        self.nodes: list[bytes] = []
        self.initializers: list[bytes] = []
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
        elif array.dtype.kind in "iu":
            array = array.astype(np.int64)
        self.initializers.append(tensor(name, array))
        return name

    def op(self, op_type: str, *inputs: str, domain: str = "", **attrs: object) -> str:
        output = self._name(op_type.lower())
        self.nodes.append(node(op_type, list(inputs), [output], domain, **attrs))
        return output

    def as_double(self) -> str:
        """The input in float64: small dense models compute in it, as their native model does."""
        return self.op("Cast", self.input, to=DOUBLE)

    def standardize(self, x: str, mean: np.ndarray, scale: np.ndarray) -> str:
        return self.op("Div", self.op("Sub", x, self.const(mean)), self.const(scale))

    def serialize(self, outputs: dict[str, str]) -> bytes:
        """The finished ``ModelProto``: each output cast to float32, ``score`` flattened to
        ``[n]``."""
        values = []
        for name, output in outputs.items():
            if name == SCORE:
                output = self.op("Reshape", output, self.const(np.array([-1])))
                shape: list[int | None] = [None]
            else:
                shape = [None, self.width]
            self.nodes.append(node("Cast", [output], [name], to=FLOAT))
            values.append(value_info(name, FLOAT, shape))
        input_shape = [None, self.width] if self.history == 1 else [None, self.history, self.width]
        graph = b"".join(_bytes(1, n) for n in self.nodes) + _bytes(2, "edgewatch")
        graph += b"".join(_bytes(5, t) for t in self.initializers)
        graph += _bytes(11, value_info(INPUT, FLOAT, input_shape))
        graph += b"".join(_bytes(12, v) for v in values)
        opsets = b"".join(
            _bytes(8, (_bytes(1, domain) if domain else b"") + _int(2, version))
            for domain, version in OPSETS.items()
        )
        return _int(1, IR_VERSION) + _bytes(2, "edgewatch") + _bytes(7, graph) + opsets
