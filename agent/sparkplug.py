"""Sparkplug B payloads: the protobuf messages ``Payload`` and ``Metric`` of the official schema
(Eclipse Tahu's ``sparkplug_b.proto``), written and read on the wire by hand.

``encode`` writes the fields edgewatch publishes. ``decode`` reads any payload a node may send:
it keeps a payload's timestamp, sequence number and metrics (name, alias, timestamp, datatype,
historical, null, and a scalar value) and skips every other field (properties, metadata, data
sets, templates, extensions). Anything that is not a well-formed payload raises
``SparkplugError``, whose ``reason`` is the counter it goes to. Its work is bounded by the
payload's length; at most ``MAX_METRICS`` metrics are read.

>>> payload = Payload(1700000000000, (Metric("temperature", 1, datatype=DOUBLE, value=21.5),), 7)
>>> decode(encode(payload)) == payload
True
"""

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from edgewatch.agent.framing import FrameError

MAX_METRICS = 10_000
# Data types (the schema's enum DataType) that edgewatch writes and reads as numbers.
INT8, INT16, INT32, INT64 = 1, 2, 3, 4
UINT8, UINT16, UINT32, UINT64 = 5, 6, 7, 8
FLOAT, DOUBLE, BOOLEAN, STRING = 9, 10, 11, 12
DATETIME, TEXT = 13, 14
_INT_BITS = {INT8: 8, INT16: 16, INT32: 32, INT64: 64}
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_F32, _F64 = struct.Struct("<f"), struct.Struct("<d")

Value = int | float | bool | str | None


class SparkplugError(FrameError):
    """A payload that is not a Sparkplug B payload; ``reason`` is its counter."""


@dataclass(frozen=True)
class Metric:
    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None
    datatype: int = 0
    value: Value = None
    historical: bool = False


@dataclass(frozen=True)
class Payload:
    timestamp: int | None = None
    metrics: tuple[Metric, ...] = ()
    seq: int | None = None


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _text(field: int, value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _key(field, _BYTES) + _varint(len(data)) + data


def _metric(metric: Metric) -> bytes:
    out = bytearray()
    if metric.name is not None:
        out += _text(1, metric.name)
    for field, number in ((2, metric.alias), (3, metric.timestamp), (4, metric.datatype)):
        if number is not None:
            out += _key(field, _VARINT) + _varint(number)
    if metric.historical:
        out += _key(5, _VARINT) + b"\x01"
    value, kind = metric.value, metric.datatype
    if value is None:
        out += _key(7, _VARINT) + b"\x01"
    elif kind == FLOAT:
        out += _key(12, _FIXED32) + _F32.pack(float(value))
    elif kind == DOUBLE:
        out += _key(13, _FIXED64) + _F64.pack(float(value))
    elif kind == BOOLEAN:
        out += _key(14, _VARINT) + (b"\x01" if value else b"\x00")
    elif kind in (STRING, TEXT):
        out += _text(15, str(value))
    elif kind in (INT64, UINT64, DATETIME):
        out += _key(11, _VARINT) + _varint(int(value))
    else:
        out += _key(10, _VARINT) + _varint(int(value) & 0xFFFFFFFF)
    return bytes(out)


def encode(payload: Payload) -> bytes:
    out = bytearray()
    if payload.timestamp is not None:
        out += _key(1, _VARINT) + _varint(payload.timestamp)
    for metric in payload.metrics:
        out += _text(2, _metric(metric))
    if payload.seq is not None:
        out += _key(3, _VARINT) + _varint(payload.seq)
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def varint(self) -> int:
        value = shift = 0
        while True:
            if self.at >= len(self.data):
                raise SparkplugError("truncated", "a varint runs past the end")
            byte = self.data[self.at]
            self.at += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value & ((1 << 64) - 1)
            shift += 7
            if shift >= 70:
                raise SparkplugError("bad_varint", "a varint of more than ten bytes")

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.at:
            raise SparkplugError("truncated", f"a field of {n} bytes runs past the end")
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def fields(self) -> Iterator[tuple[int, int, int | bytes]]:
        """Each field as (number, wire type, value): an int, or the bytes of the field."""
        while self.at < len(self.data):
            key = self.varint()
            field, wire = key >> 3, key & 7
            if field == 0:
                raise SparkplugError("bad_field", "field number 0")
            if wire == _VARINT:
                yield field, wire, self.varint()
            elif wire == _FIXED64:
                yield field, wire, self.take(8)
            elif wire == _BYTES:
                yield field, wire, self.take(self.varint())
            elif wire == _FIXED32:
                yield field, wire, self.take(4)
            else:
                raise SparkplugError("bad_wire_type", f"wire type {wire} (groups are not used)")


def _string(raw: object) -> str:
    if not isinstance(raw, bytes):
        raise SparkplugError("bad_field", "a string field that is not length-delimited")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise SparkplugError("bad_utf8", "a string that is not UTF-8") from None


def _integer(raw: object) -> int:
    if not isinstance(raw, int):
        raise SparkplugError("bad_field", "an integer field that is not a varint")
    return raw


def _decode_metric(data: bytes) -> Metric:
    fields: dict[str, object] = {}
    value: Value = None
    for field, _, raw in _Reader(data).fields():
        if field == 1:
            fields["name"] = _string(raw)
        elif field in (2, 3, 4):
            fields[("alias", "timestamp", "datatype")[field - 2]] = _integer(raw)
        elif field == 5:
            fields["historical"] = bool(_integer(raw))
        elif field in (10, 11):
            value = _integer(raw)
        elif field in (12, 13):
            if not isinstance(raw, bytes) or len(raw) != (4 if field == 12 else 8):
                raise SparkplugError("bad_field", "a float that is not fixed-width")
            value = (_F32 if field == 12 else _F64).unpack(raw)[0]
        elif field == 14:
            value = bool(_integer(raw))
        elif field == 15:
            value = _string(raw)
    datatype = fields.get("datatype", 0)
    assert isinstance(datatype, int)
    return Metric(**fields, value=_typed(value, datatype))  # type: ignore[arg-type]


def _typed(value: Value, datatype: int) -> Value:
    """An integer value as its data type reads it: signed types from two's complement."""
    if isinstance(value, bool) or not isinstance(value, int):
        return value
    bits = _INT_BITS.get(datatype, 0)
    if bits and value & (1 << (bits - 1)):
        return (value & ((1 << bits) - 1)) - (1 << bits)
    return value


def decode(data: bytes) -> Payload:
    timestamp = seq = None
    metrics: list[Metric] = []
    for field, _, raw in _Reader(data).fields():
        if field == 1:
            timestamp = _integer(raw)
        elif field == 2:
            if not isinstance(raw, bytes):
                raise SparkplugError("bad_field", "a metric that is not a message")
            if len(metrics) == MAX_METRICS:
                raise SparkplugError("too_many_metrics", f"more than {MAX_METRICS} metrics")
            metrics.append(_decode_metric(raw))
        elif field == 3:
            seq = _integer(raw)
    return Payload(timestamp, tuple(metrics), seq)
