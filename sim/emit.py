"""``edgewatch simulate``: a simulated machine sent where a real one would send its samples.

Targets:

- ``mqtt://HOST:PORT/TOPIC``: one message per block, JSON or binary blocks, QoS 1;
- ``serial:/dev/ttyX``: binary frames (sync, length, sequence, CRC-16) or CSV lines;
- a ``.csv`` or ``.npy`` file: the whole run, a header naming the channels in the CSV.

Blocks are paced at real time times ``speed``, or sent as fast as the target takes them.
"""

import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import serial

from edgewatch.agent.clock import Pacer
from edgewatch.agent.config import Broker
from edgewatch.agent.framing import encode_block, encode_frame
from edgewatch.agent.mqtt import make_client

Format = Literal["json", "binary", "csv"]


class TargetError(ValueError):
    """A target that cannot be used."""


@dataclass(frozen=True)
class Blocks:
    """``signal[channels, n]`` of ``device`` cut into blocks of ``block`` samples from ``t0``."""

    device: str
    channels: tuple[str, ...]
    sample_rate: float
    signal: np.ndarray
    block: int
    t0: float

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        for start in range(0, self.signal.shape[1], self.block):
            yield self.t0 + start / self.sample_rate, self.signal[:, start : start + self.block]

    def json(self, ts: float, samples: np.ndarray) -> bytes:
        values = ",".join("[" + ",".join(map(repr, row.tolist())) + "]" for row in samples)
        names = ",".join(f'"{c}"' for c in self.channels)
        return (
            f'{{"device":"{self.device}","ts":{ts!r},"sample_rate":{self.sample_rate!r},'
            f'"channels":[{names}],"values":[{values}]}}'
        ).encode()


def _paced(blocks: Blocks, speed: float | None) -> Iterator[tuple[float, np.ndarray]]:
    pacer = Pacer(speed)
    for ts, samples in blocks:
        pacer.wait(ts - blocks.t0)
        yield ts, samples


def to_mqtt(url: str, blocks: Blocks, fmt: Format, speed: float | None) -> int:
    parsed = urllib.parse.urlsplit(url)
    topic = parsed.path.lstrip("/")
    if not parsed.hostname or not topic:
        raise TargetError(f"{url}: expected mqtt://HOST[:PORT]/TOPIC")
    if fmt == "csv":
        raise TargetError("MQTT carries json or binary blocks, not csv")
    broker = Broker(host=parsed.hostname, port=parsed.port or 1883)
    client = make_client(broker, f"edgewatch-simulate-{blocks.device}")
    client.max_inflight_messages_set(100)
    try:
        client.connect(broker.host, broker.port)
    except OSError as e:
        raise TargetError(f"{url}: {e}") from None
    client.loop_start()
    sent = 0
    last = None
    for ts, samples in _paced(blocks, speed):
        payload = (
            blocks.json(ts, samples)
            if fmt == "json"
            else encode_block(blocks.device, ts, blocks.sample_rate, samples)
        )
        last = client.publish(topic, payload, qos=1)
        sent += 1
    if last is not None:
        last.wait_for_publish(timeout=30)
    client.disconnect()
    client.loop_stop()
    return sent


def to_serial(port: str, blocks: Blocks, fmt: Format, speed: float | None, baudrate: int) -> int:
    try:
        link = serial.Serial(port, baudrate, write_timeout=10)
    except (serial.SerialException, OSError) as e:
        raise TargetError(f"serial:{port}: {e}") from None
    sent = 0
    with link:
        for ts, samples in _paced(blocks, speed):
            if fmt == "csv":
                lines = "\n".join(",".join(f"{v:.6g}" for v in row) for row in samples.T)
                link.write(lines.encode() + b"\n")
            else:
                block = encode_block(blocks.device, ts, blocks.sample_rate, samples)
                link.write(encode_frame(sent, block))
            sent += 1
        link.flush()
    return sent


def to_file(path: Path, blocks: Blocks) -> int:
    rows = blocks.signal.T
    if path.suffix == ".npy":
        np.save(path, rows.astype(np.float32))
    else:
        with path.open("w", encoding="utf-8") as f:
            f.write(",".join(blocks.channels) + "\n")
            np.savetxt(f, rows, delimiter=",", fmt="%.7g")
    return int(rows.shape[0])


def send(
    target: str,
    blocks: Blocks,
    fmt: Format,
    speed: float | None,
    baudrate: int = 115200,
) -> tuple[int, str]:
    """Send ``blocks`` to ``target``; returns what was sent, counted, and its unit."""
    if target.startswith("mqtt://"):
        return to_mqtt(target, blocks, fmt, speed), "messages"
    if target.startswith("serial:"):
        return to_serial(target.removeprefix("serial:"), blocks, fmt, speed, baudrate), "frames"
    return to_file(Path(target), blocks), "rows"
