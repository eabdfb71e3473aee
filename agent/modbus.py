"""Modbus, the wire: read requests, the responses to them, and tags read out of the words.

A ``Read`` asks one slave for ``count`` registers or bits of one table, with function code 1
(coils), 2 (discrete inputs), 3 (holding registers) or 4 (input registers). On RTU its frame is
the slave, the PDU and a CRC-16/MODBUS, low byte first; on TCP an MBAP header (transaction,
protocol 0, length, unit) comes before the PDU. A response is checked against the request it
answers: anything else is a ``ModbusError`` whose ``reason`` is the counter it goes to:

- ``crc``: the RTU frame's CRC does not match;
- ``exception_<name>``: the slave answered with exception code 1-11 (``exception_other``
  beyond);
- ``bad_response``: a frame that is not the answer to the request (another slave, function,
  transaction or length).

Tags are planned into reads: a slave's tags of one table in runs of contiguous registers, at
most 125 registers (2000 bits) per read.
"""

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from edgewatch.agent.framing import FrameError
from edgewatch.agent.sources.settings import Tag

FUNCTIONS = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
MAX_COUNT = {"coil": 2000, "discrete": 2000, "holding": 125, "input": 125}
EXCEPTIONS = {
    1: "illegal_function",
    2: "illegal_address",
    3: "illegal_value",
    4: "device_failure",
    5: "acknowledge",
    6: "busy",
    8: "memory_parity",
    10: "gateway_path",
    11: "gateway_no_answer",
}
MBAP = struct.Struct(">HHHB")
_REQUEST = struct.Struct(">BHH")
_FORMATS = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "float32": "f",
    "float64": "d",
}


class ModbusError(FrameError):
    """A response that does not answer its request; ``reason`` is the counter it goes to."""


@dataclass(frozen=True)
class Read:
    """``count`` registers (or bits) of ``table`` from ``address`` on, and the tags in them."""

    slave: int
    table: str
    address: int
    count: int
    tags: tuple[Tag, ...] = ()

    @property
    def function(self) -> int:
        return FUNCTIONS[self.table]

    @cached_property
    def layouts(self) -> "tuple[_Layout, ...]":
        return tuple(_Layout.of(tag, self) for tag in self.tags)

    @property
    def data_bytes(self) -> int:
        """The bytes of data a normal response carries."""
        return (self.count + 7) // 8 if self.table in ("coil", "discrete") else 2 * self.count

    def pdu(self) -> bytes:
        return _REQUEST.pack(self.function, self.address, self.count)

    def rtu(self) -> bytes:
        frame = bytes([self.slave]) + self.pdu()
        return frame + crc16(frame).to_bytes(2, "little")

    def tcp(self, transaction: int) -> bytes:
        pdu = self.pdu()
        return MBAP.pack(transaction, 0, len(pdu) + 1, self.slave) + pdu


def plan(tags: Sequence[Tag]) -> list[Read]:
    """The reads that cover ``tags``: per slave and table, contiguous runs of registers.

    >>> from edgewatch.agent.sources.settings import Tag
    >>> tags = [Tag(device="p", channel=c, address=a, type="float32") for c, a in
    ...         (("t", 0), ("p", 2), ("q", 10))]
    >>> [(r.address, r.count, len(r.tags)) for r in plan(tags)]
    [(0, 4, 2), (10, 2, 1)]
    """
    reads: list[Read] = []
    ordered = sorted(tags, key=lambda t: (t.slave, FUNCTIONS[t.table], t.address))
    for tag in ordered:
        last = reads[-1] if reads else None
        end = tag.address + tag.words
        if (
            last is not None
            and (last.slave, last.table) == (tag.slave, tag.table)
            and tag.address <= last.address + last.count
            and end - last.address <= MAX_COUNT[tag.table]
        ):
            count = max(last.count, end - last.address)
            reads[-1] = Read(last.slave, last.table, last.address, count, (*last.tags, tag))
        else:
            reads.append(Read(tag.slave, tag.table, tag.address, tag.words, (tag,)))
    return reads


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS (reflected poly 0xA001, init 0xFFFF).

    >>> hex(crc16(b"123456789"))
    '0x4b37'
    """
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _table()


def rtu_pdu(read: Read, frame: bytes) -> bytes:
    """The PDU of an RTU ``frame`` answering ``read``, its CRC and slave checked."""
    if len(frame) < 5:
        raise ModbusError("bad_response", f"{len(frame)} bytes is shorter than an RTU frame")
    if crc16(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
        raise ModbusError("crc", "the frame's CRC does not match")
    if frame[0] != read.slave:
        raise ModbusError("bad_response", f"an answer from slave {frame[0]}, not {read.slave}")
    return frame[1:-2]


def tcp_pdu(read: Read, transaction: int, frame: bytes) -> bytes:
    """The PDU of a TCP ``frame`` (its MBAP header first) answering ``read``."""
    if len(frame) < MBAP.size + 2:
        raise ModbusError("bad_response", f"{len(frame)} bytes is shorter than a TCP frame")
    tid, protocol, length, unit = MBAP.unpack_from(frame)
    if (tid, protocol, unit) != (transaction, 0, read.slave) or length != len(frame) - 6:
        raise ModbusError("bad_response", "the MBAP header does not answer the request")
    return frame[MBAP.size :]


def values(read: Read, pdu: bytes) -> list[float]:
    """The values of ``read``'s tags, scaled, out of a response ``pdu``.

    >>> from edgewatch.agent.sources.settings import Tag
    >>> tags = (Tag(device="p", channel="t", address=0, type="float32", word_order="little"),
    ...         Tag(device="p", channel="on", address=2, type="bit", bit=1))
    >>> values(Read(1, "holding", 0, 3, tags), bytes.fromhex("0306 0000 4148 0002"))
    [12.5, 1.0]
    """
    if len(pdu) >= 2 and pdu[0] == read.function | 0x80:
        name = EXCEPTIONS.get(pdu[1], "other")
        raise ModbusError(f"exception_{name}", f"slave {read.slave}: exception {pdu[1]} ({name})")
    if len(pdu) < 2 or pdu[0] != read.function:
        raise ModbusError("bad_response", "the answer is to another function")
    if pdu[1] != read.data_bytes or len(pdu) != 2 + read.data_bytes:
        raise ModbusError("bad_response", f"{len(pdu) - 2} data bytes, not {read.data_bytes}")
    if read.table in ("coil", "discrete"):
        bits = int.from_bytes(pdu[2:], "little")
        return [float((bits >> (tag.address - read.address)) & 1) for tag in read.tags]
    return [_value(layout, pdu) for layout in read.layouts]


@dataclass(frozen=True)
class _Layout:
    """Where a register tag's bytes lie in a response, and how to read them."""

    at: int
    size: int
    order: tuple[int, ...] | None
    format: struct.Struct | None
    bit: int
    scale: float
    offset: float

    @classmethod
    def of(cls, tag: Tag, read: Read) -> "_Layout":
        at = 2 + 2 * (tag.address - read.address)
        size = 2 * tag.words
        words = list(range(tag.words))
        if tag.word_order == "little":
            words.reverse()
        order = [2 * w + (b if tag.byte_order == "big" else 1 - b) for w in words for b in (0, 1)]
        kind = tag.kind
        return cls(
            at,
            size,
            None if order == sorted(order) else tuple(order),
            None if kind == "bit" else struct.Struct(">" + _FORMATS[kind]),
            tag.bit or 0,
            tag.scale,
            tag.offset,
        )


def _value(layout: _Layout, pdu: bytes) -> float:
    raw = pdu[layout.at : layout.at + layout.size]
    if layout.order is not None:
        raw = bytes(raw[i] for i in layout.order)
    if layout.format is None:
        number = float((int.from_bytes(raw, "big") >> layout.bit) & 1)
    else:
        number = float(layout.format.unpack(raw)[0])
    return number * layout.scale + layout.offset
