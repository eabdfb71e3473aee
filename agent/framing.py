"""Framing: bytes from a source into blocks of samples, with a count for everything refused.

Three wire formats:

- **Binary block** (an MQTT payload, and the payload of a serial frame), little-endian::

      magic "EW" | version u8 = 1 | dtype u8 (1 float32, 2 int16) | channels u16 | samples u16
      | sample_rate f32 | ts f64 (seconds, first sample) | scale f32 (int16 only) | device: u8
      length + UTF-8 | samples, sample-major: [samples][channels]

- **Serial frame**: sync ``55 AA`` | length u16 (payload bytes) | sequence u32 | payload (a binary
  block) | CRC-16/CCITT-FALSE u16 over length, sequence and payload. After garbage or a bad
  frame the decoder resynchronises on the next sync word. Each run of garbage counts once
  (``garbage``), its bytes apart (``Counts.garbage_bytes``). Its work is bounded per byte
  received: a line full of sync words, each promising a long frame, would otherwise cost a CRC
  of that length for every two bytes; candidates beyond ``CRC_WORK`` checked bytes per byte
  received are refused unchecked (``flood``), which no valid stream comes near.

- **JSON** (MQTT): ``{"device", "ts", "sample_rate", "channels": [names], "values": [[...], ...]}``
  with one list of samples per channel.

Serial ports can also carry CSV: one line per sample, one number per channel.
"""

import binascii
import json
import math
import struct
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

SYNC = b"\x55\xaa"
MAGIC = b"EW"
VERSION = 1
FLOAT32, INT16 = 1, 2
MAX_PAYLOAD = 60_000
CRC_WORK = 8
MAX_LINE = 4096
MAX_NAME = 255
# A block's time and rate must keep every window and row after it within what an alert's
# timestamp can carry (datetime ends in the year 9999): blocks start before the year 3000, and
# a block of 65,535 samples at the slowest rate spans less than two years.
LATEST_TS = 32_503_680_000.0
MIN_RATE, MAX_RATE = 1e-3, 1e7
FLOAT32_MAX = float(np.finfo(np.float32).max)
_BLOCK_HEAD = struct.Struct("<2sBBHHfdf")
_FRAME_HEAD = struct.Struct("<2sHI")
_LENGTH_SEQUENCE = struct.Struct("<HI")
_CRC = struct.Struct("<H")


class FrameError(ValueError):
    """A payload that is not a valid block; ``reason`` is the counter it goes to."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Block:
    """Consecutive samples of one device: ``samples[channels, n]`` from time ``ts`` (s)."""

    device: str
    ts: float
    sample_rate: float
    samples: np.ndarray
    channels: tuple[str, ...] = ()
    sequence: int | None = None


@dataclass
class Counts:
    """What a decoder accepted and refused, by reason, and the sequence numbers it missed."""

    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    gaps: int = 0
    garbage_bytes: int = 0


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF).

    >>> hex(crc16(b"123456789"))
    '0x29b1'
    """
    return binascii.crc_hqx(data, 0xFFFF)


def encode_block(
    device: str, ts: float, sample_rate: float, samples: np.ndarray, scale: float | None = None
) -> bytes:
    """A binary block; with ``scale``, samples go as int16 counts of ``scale`` each."""
    name = device.encode()
    channels, n = samples.shape
    if scale is None:
        dtype, body, scale = FLOAT32, samples.T.astype("<f4").tobytes(), 1.0
    else:
        counts = np.clip(np.rint(samples.T / scale), -32768, 32767).astype("<i2")
        dtype, body = INT16, counts.tobytes()
    head = _BLOCK_HEAD.pack(MAGIC, VERSION, dtype, channels, n, sample_rate, ts, scale)
    return head + bytes([len(name)]) + name + body


def decode_block(payload: bytes) -> Block:
    """The block in ``payload``; ``FrameError`` says what is wrong with it."""
    if len(payload) < _BLOCK_HEAD.size + 1:
        raise FrameError("truncated", f"{len(payload)} bytes is shorter than a block header")
    magic, version, dtype, channels, n, rate, ts, scale = _BLOCK_HEAD.unpack_from(payload)
    if magic != MAGIC or version != VERSION:
        raise FrameError("bad_header", f"not a version {VERSION} block (magic {magic!r})")
    if dtype not in (FLOAT32, INT16):
        raise FrameError("bad_header", f"unknown sample type {dtype}")
    if channels == 0 or n == 0:
        raise FrameError("bad_header", "a block needs at least one channel and one sample")
    if not math.isfinite(scale):
        raise FrameError("bad_header", "the scale must be finite")
    _check_time(ts, rate)
    at = _BLOCK_HEAD.size
    length = payload[at]
    try:
        device = payload[at + 1 : at + 1 + length].decode()
    except UnicodeDecodeError:
        raise FrameError("bad_header", "the device name is not UTF-8") from None
    at += 1 + length
    width = 4 if dtype == FLOAT32 else 2
    expected = at + channels * n * width
    if len(payload) != expected or not device:
        raise FrameError("bad_length", f"{len(payload)} bytes, but the header promises {expected}")
    raw = np.frombuffer(payload, "<f4" if dtype == FLOAT32 else "<i2", channels * n, at)
    samples = raw.reshape(n, channels).T.astype(np.float32)
    if dtype == INT16:
        with np.errstate(over="ignore"):  # counts times a huge scale: inf, refused below
            samples *= np.float32(scale)
    if not np.isfinite(samples).all():
        raise FrameError("not_finite", "samples hold NaN or inf, or beyond float32 once scaled")
    return Block(device, ts, rate, np.ascontiguousarray(samples))


def _check_time(ts: float, rate: float) -> None:
    """``FrameError`` unless ``ts`` and ``rate`` are numbers in the ranges a block may take."""
    if not 0 <= ts < LATEST_TS:  # NaN too
        raise FrameError("bad_time", f"time {ts} s is not between 1970 and 3000")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise FrameError("bad_rate", f"sample rate {rate} Hz is not in [{MIN_RATE}, {MAX_RATE}]")


def encode_frame(sequence: int, payload: bytes) -> bytes:
    """A serial frame around ``payload``."""
    body = _LENGTH_SEQUENCE.pack(len(payload), sequence & 0xFFFFFFFF) + payload
    return SYNC + body + _CRC.pack(crc16(body))


class FrameDecoder:
    """Serial frames out of a byte stream fed in pieces of any size."""

    def __init__(self) -> None:
        self.counts = Counts()
        self._buffer = bytearray()
        self._next: int | None = None
        self._in_garbage = False
        self._budget = self._max_budget = CRC_WORK * (_FRAME_HEAD.size + MAX_PAYLOAD + _CRC.size)

    def feed(self, data: bytes) -> list[Block]:
        self._buffer += data
        self._budget = min(self._budget + CRC_WORK * len(data), self._max_budget)
        blocks = []
        buffer = self._buffer
        while True:
            start = buffer.find(SYNC)
            if start < 0:
                keep = 1 if buffer.endswith(SYNC[:1]) else 0
                self._skip(len(buffer) - keep)
                break
            self._skip(start)
            if len(buffer) < _FRAME_HEAD.size:
                break
            self._in_garbage = False
            _, length, sequence = _FRAME_HEAD.unpack_from(buffer)
            if length > MAX_PAYLOAD:
                self._reject("oversized")
                continue
            end = _FRAME_HEAD.size + length + _CRC.size
            if len(buffer) < end:
                break
            checked = end - _CRC.size - len(SYNC)
            if checked > self._budget:
                self._reject("flood")
                continue
            self._budget -= checked
            (crc,) = _CRC.unpack_from(buffer, end - _CRC.size)
            if crc != crc16(bytes(buffer[2 : end - _CRC.size])):
                self._reject("crc")
                continue
            try:
                block = decode_block(bytes(buffer[_FRAME_HEAD.size : end - _CRC.size]))
            except FrameError as e:
                self._reject(e.reason)
                del buffer[:end]
                continue
            del buffer[:end]
            self._sequence(sequence)
            self.counts.accepted += 1
            blocks.append(
                Block(block.device, block.ts, block.sample_rate, block.samples, (), sequence)
            )
        return blocks

    def _skip(self, count: int) -> None:
        if count > 0:
            if not self._in_garbage:
                self.counts.rejected["garbage"] += 1
                self._in_garbage = True
            self.counts.garbage_bytes += count
            del self._buffer[:count]

    def _reject(self, reason: str) -> None:
        """Count a bad frame and look for the next sync word past this one."""
        self.counts.rejected[reason] += 1
        del self._buffer[: len(SYNC)]

    def _sequence(self, sequence: int) -> None:
        if self._next is not None and sequence != self._next:
            self.counts.gaps += 1
        self._next = (sequence + 1) & 0xFFFFFFFF


class CsvLineDecoder:
    """Rows of ``channels`` numbers, one CSV line per sample, from a byte stream."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.counts = Counts()
        self._partial = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> np.ndarray:
        """The complete, valid lines in ``data`` (and what came before) as ``[rows, channels]``."""
        self._partial += data
        *lines, rest = bytes(self._partial).split(b"\n")
        if lines and self._discarding:
            # The tail of a line already refused as too long.
            lines.pop(0)
            self._discarding = False
        if len(rest) > MAX_LINE:
            if not self._discarding:
                self.counts.rejected["too_long"] += 1
            self._discarding = True
            rest = b""
        self._partial = bytearray(rest)
        rows = []
        for line in lines:
            row = self._row(line.strip())
            if row is not None:
                rows.append(row)
        self.counts.accepted += len(rows)
        return np.array(rows, dtype=np.float32).reshape(len(rows), self.channels)

    def _row(self, line: bytes) -> list[float] | None:
        if not line:
            return None
        if len(line) > MAX_LINE:
            self.counts.rejected["too_long"] += 1
            return None
        fields = line.split(b",")
        if len(fields) != self.channels:
            self.counts.rejected["wrong_field_count"] += 1
            return None
        try:
            row = [float(f) for f in fields]
        except ValueError:
            self.counts.rejected["not_a_number"] += 1
            return None
        if not all(abs(v) <= FLOAT32_MAX for v in row):  # NaN too
            self.counts.rejected["not_finite"] += 1
            return None
        return row


def decode_json(payload: bytes) -> Block:
    """The JSON sensor message in ``payload``; ``FrameError`` says what is wrong with it."""
    try:
        message = json.loads(payload)
    except (ValueError, RecursionError) as e:  # not UTF-8 or JSON, too deep, too many digits
        raise FrameError("bad_json", f"not JSON: {type(e).__name__}: {e}"[:200]) from None
    if not isinstance(message, dict):
        raise FrameError("bad_json", "expected a JSON object")
    missing = [k for k in ("device", "ts", "sample_rate", "channels", "values") if k not in message]
    if missing:
        raise FrameError("bad_json", f"missing {', '.join(missing)}")
    device, channels, values = message["device"], message["channels"], message["values"]
    if not isinstance(device, str) or not 0 < len(device) <= MAX_NAME:
        raise FrameError("bad_json", f"device must be a string of 1 to {MAX_NAME} characters")
    ts, rate = _number(message, "ts", "bad_time"), _number(message, "sample_rate", "bad_rate")
    _check_time(ts, rate)
    if (
        not isinstance(channels, list)
        or not channels
        or not all(isinstance(c, str) and 0 < len(c) <= MAX_NAME for c in channels)
    ):
        raise FrameError("bad_json", "channels must be a non-empty list of names")
    if not (
        isinstance(values, list)
        and all(isinstance(row, list) for row in values)
        and all(type(v) is float or type(v) is int for row in values for v in row)
    ):
        raise FrameError("bad_json", "values must be one list of numbers per channel")
    if len(values) != len(channels) or not values[0] or len({len(row) for row in values}) != 1:
        raise FrameError(
            "bad_length",
            f"values must be {len(channels)} equal, non-empty lists (one per channel)",
        )
    try:
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused just below
            samples = np.array(values, dtype=np.float32)
    except OverflowError:  # an integer beyond any float
        raise FrameError("not_finite", "values hold numbers beyond float32") from None
    if not np.isfinite(samples).all():
        raise FrameError("not_finite", "values hold NaN, inf or numbers beyond float32")
    return Block(device, ts, rate, samples, tuple(channels))


def _number(message: dict[str, object], key: str, too_large: str) -> float:
    value = message[key]
    if type(value) is not float and type(value) is not int:
        raise FrameError("bad_json", f"{key} must be a number")
    try:
        return float(value)
    except OverflowError:  # an integer beyond float64
        raise FrameError(too_large, f"{key} is too large") from None
