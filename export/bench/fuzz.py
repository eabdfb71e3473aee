"""``edgewatch bench fuzz``: every parser of hostile input, fed mutated inputs by the million.

Each parser takes bytes from outside (the network, a serial line, a config file, a bundle) and
has one documented way to refuse them; anything else it raises is an *escape*, the kind of
exception that once killed a thread. Inputs are valid seeds mutated at random (bytes flipped,
inserted, deleted, repeated, spliced from another seed, numbers made huge, nesting made deep),
and random bytes. The run is seeded, so an escape can be replayed; ``--json`` prints the first
escapes of each parser as hex.

>>> result = run(PARSERS["notice"], 200, seed=1)
>>> result["inputs"], result["escapes"]
(200, 0)
"""

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from edgewatch.agent.bundle import BundleError, parse_manifest
from edgewatch.agent.config import ConfigError, parse_config
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.feedback import Feedback
from edgewatch.agent.framing import (
    CsvLineDecoder,
    FrameDecoder,
    FrameError,
    decode_block,
    decode_json,
    encode_block,
    encode_frame,
)
from edgewatch.agent.modbus import ModbusError, Read, crc16, plan, rtu_pdu, tcp_pdu, values
from edgewatch.agent.offline import parse_replay_settings
from edgewatch.agent.onsite.baseline import restore
from edgewatch.agent.onsite.labelled import rows_of
from edgewatch.agent.reload import parse_notice
from edgewatch.agent.requests import subject
from edgewatch.agent.sources.settings import SparkplugSource, Tag
from edgewatch.agent.sources.sparkplug import SparkplugRows
from edgewatch.agent.sparkplug import (
    BOOLEAN,
    DOUBLE,
    INT32,
    STRING,
    Metric,
    Payload,
    SparkplugError,
    decode,
    encode,
)

KEPT_ESCAPES = 5


@dataclass(frozen=True)
class Parser:
    parse: Callable[[bytes], object]
    refusal: tuple[type[Exception], ...]
    seeds: tuple[bytes, ...]


def _frames(data: bytes) -> None:
    FrameDecoder().feed(data)


def _csv(data: bytes) -> None:
    CsvLineDecoder(3).feed(data)


def _manifest(data: bytes) -> None:
    parse_manifest(Path("fuzz"), data)


def _config(data: bytes) -> None:
    parse_config(data.decode("utf-8", "replace"), env={})


_BLOCK = encode_block("fan", 1.5, 25600.0, np.arange(12, dtype=np.float32).reshape(3, 4))
_JSON = json.dumps(
    {"device": "fan", "ts": 1.5, "sample_rate": 10, "channels": ["x"], "values": [[1, 2.5]]}
).encode()
# The shape of a manifest, with every section present and small.
_MANIFEST = json.dumps(
    {
        "schema_version": 1,
        "name": "pump",
        "version": "1",
        "created_at": "2026-12-02T06:53:53Z",
        "edgewatch_version": "0.1.0",
        "feature_spec": {"kind": "process", "channels": ["t"]},
        "feature_names": FeatureSpec(kind="process", channels=("t",)).feature_names,
        "model": {
            "kind": "pca_t2q",
            "file": "model.onnx",
            "input": {"name": "features", "dtype": "float32", "shape": [None, 6]},
            "outputs": [{"name": "score", "dtype": "float32", "shape": [None]}],
            "opsets": {"ai.onnx": 17},
        },
        "score": {"raw": [0.1, 0.5, 0.9], "calibrated": [0.0, 1.0, 2.0]},
        "thresholds": {
            "policy": "false_alarm_budget",
            "warning": 2.0,
            "critical": 3.0,
            "raw_warning": 0.9,
            "raw_critical": 1.2,
            "warning_far": 0.01,
            "critical_far": 0.0,
            "normal_rows": 100,
        },
        "training": {
            "data_sha256": "0" * 64,
            "rows": {"train": 10},
            "hyperparameters": {},
            "metrics": {},
            "parity": {
                "rows": 1,
                "max_abs_diff": 0.0,
                "max_rel_diff": 0.0,
                "tolerance": 1e-4,
                "flips": 0.0,
            },
            "libraries": {},
        },
        "regimes": {
            "features": [0],
            "mean": [1.0],
            "scale": [2.0],
            "centres": [[-1.0], [1.0]],
            "radius": [0.5, 0.5],
            "scales": [{"raw": [0.1, 0.5], "calibrated": [0.0, 1.0]}, None],
        },
        "files": {"model.onnx": "0" * 64},
    }
).encode()

# A config with sources and sinks of every type, a broker and a decision with a gate.
_CONFIG = b"""site = "plant-a"
device = "gateway-7"
max_devices = 50
[model]
bundle = "/var/lib/edgewatch/bundle.tar"
threads = 1
[[sources]]
type = "mqtt"
topic = "sensors/#"
format = "json"
[[sources]]
type = "serial"
port = "/dev/ttyUSB0"
device = "pump"
channels = ["x"]
sample_rate = 1000
format = "csv"
[[sources]]
type = "replay"
path = "/r.csv"
device = "press"
channels = ["x", "y"]
sample_rate = 25600
speed = "max"
[[sources]]
type = "modbus"
transport = "rtu"
serial = "/dev/ttyUSB1"
interval_s = 0.5
[[sources.tags]]
device = "boiler"
channel = "t"
slave = 3
address = 100
type = "float32"
word_order = "little"
scale = 0.1
[[sources.tags]]
device = "boiler"
channel = "on"
table = "coil"
address = 7
[[sinks]]
type = "mqtt"
telemetry = true
[[sinks]]
type = "jsonl"
path = "/tmp/alerts.jsonl"
[mqtt]
host = "broker.local"
port = 8883
reconnect_max_s = 3
[decision]
warning = 2.5
n = 3
m = 5
[decision.gate]
type = "rms"
floor = 0.01
[[machines]]
name = "pumps"
devices = ["pump-*", "p[12]"]
learn = { detector = "kmeans", clusters = 2, min_rows = 500, duration_s = 600 }
features = { kind = "process", channels = ["t", "p"] }
[machines.decision]
warning = 3.0
[[machines]]
name = "fans"
devices = ["fan-?"]
bundle = "/var/lib/edgewatch/fan.tar"
"""
_REPLAY = b"""site = "bench"
[decision]
warmup_windows = 0
n = 2
m = 3
[learn]
min_rows = 400
duration_s = 0
[features]
kind = "record"
channels = ["a", "b"]
"""
_SPEC_SHA = "0" * 64
_STATE = json.dumps(
    {"spec_sha256": _SPEC_SHA, "first_ts": 1.5, "last_ts": 99.0, "stride": 2, "seen": 7}
).encode()


def _npy(rows: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, rows, allow_pickle=False)
    return out.getvalue()


_ROWS = _npy(np.arange(12, dtype=np.float32).reshape(4, 3))


def _baseline_state(data: bytes) -> None:
    restore(data, _ROWS, _SPEC_SHA, 3, 100)


def _baseline_rows(data: bytes) -> None:
    restore(_STATE, data, _SPEC_SHA, 3, 100)


# A read of four holding registers (a float32, an int16, a register's bit) and of ten coils.
_REGISTERS = plan(
    [
        Tag(device="d", channel="f", address=0, type="float32", word_order="little"),
        Tag(device="d", channel="i", address=2, type="int16", scale=0.1),
        Tag(device="d", channel="b", address=3, type="bit", bit=5),
    ]
)[0]
_COILS = Read(1, "coil", 0, 10, (Tag(device="d", channel="c", table="coil", address=9),))
_RTU_ANSWER = bytes([1, 3, 8, 0, 0, 0x41, 0x48, 0xFF, 0x85, 0, 32])


def _rtu(data: bytes) -> None:
    values(_REGISTERS, rtu_pdu(_REGISTERS, data))


def _tcp(data: bytes) -> None:
    values(_COILS, tcp_pdu(_COILS, 1, data))


_SPARKPLUG = encode(
    Payload(
        1_800_000_000_000,
        (
            Metric("Inputs/Temperature", 10, 1_800_000_000_500, DOUBLE, 81.5),
            Metric(None, 11, None, BOOLEAN, True, historical=True),
            Metric("Line/Speed", None, None, INT32, -7),
            Metric("Label", 12, None, STRING, "ok"),
        ),
        3,
    )
)
_SPARKPLUG_SOURCE = SparkplugSource.model_validate(
    {
        "type": "sparkplug",
        "group": "g",
        "metrics": [
            {"device": "b", "channel": c, "node": "n", "sparkplug_device": "d", "metric": m}
            for c, m in (("t", "Inputs/Temperature"), ("s", "Line/Speed"))
        ],
    }
)


def _sparkplug_rows(data: bytes) -> None:
    rows = SparkplugRows(_SPARKPLUG_SOURCE)
    rows("spBv1.0/g/DBIRTH/n/d", _SPARKPLUG)
    rows("spBv1.0/g/DDATA/n/d", data)


PARSERS = {
    "json": Parser(decode_json, (FrameError,), (_JSON,)),
    "block": Parser(decode_block, (FrameError,), (_BLOCK,)),
    "frames": Parser(_frames, (), (encode_frame(1, _BLOCK) * 2,)),
    "csv": Parser(_csv, (), (b"1,2,3\n4.5,-6e3,7\n",)),
    "notice": Parser(
        parse_notice, (ValueError,), (b'{"path": "/b/v7", "sha256": "' + b"a" * 64 + b'"}',)
    ),
    "feedback": Parser(
        Feedback.model_validate_json,
        (ValidationError,),
        (
            b'{"alert_id": "3c280ff8", "label": "normal", "note": "belt"}',
            b'{"device": "pump-1", "label": "rebaseline"}',
        ),
    ),
    "labelled_rows": Parser(partial(rows_of, width=3), (ValueError,), (_ROWS,)),
    "request": Parser(subject, (ValueError,), (b"pump-1",)),
    "manifest": Parser(_manifest, (BundleError,), (_MANIFEST,)),
    "config": Parser(_config, (ConfigError,), (_CONFIG,)),
    "replay_settings": Parser(parse_replay_settings, (ConfigError,), (_REPLAY,)),
    "baseline_state": Parser(_baseline_state, (ValueError,), (_STATE,)),
    "baseline_rows": Parser(_baseline_rows, (ValueError,), (_ROWS,)),
    "modbus_rtu": Parser(
        _rtu,
        (ModbusError,),
        (
            _RTU_ANSWER + crc16(_RTU_ANSWER).to_bytes(2, "little"),
            bytes([1, 0x83, 2, 0xC0, 0xF1]),
        ),
    ),
    "sparkplug": Parser(decode, (SparkplugError,), (_SPARKPLUG,)),
    "sparkplug_rows": Parser(_sparkplug_rows, (), (_SPARKPLUG,)),
    "modbus_tcp": Parser(
        _tcp,
        (ModbusError,),
        (bytes.fromhex("0001 0000 0005 01 01 02 0102"), bytes.fromhex("0001 0000 0003 01 81 0b")),
    ),
}

_HOSTILE = (
    b"[" * 5000,
    b"{" * 5000,
    b"1" * 5000,
    b"1e400",
    b"-1e400",
    b"NaN",
    b"\x00",
    b"\xff\xfe",
    b'"\\ud800"',
    b"true",
    b"9" * 400,
)


def mutate(rng: np.random.Generator, seeds: tuple[bytes, ...]) -> bytes:
    """One input: a seed mutated a few times, or now and then plain random bytes."""
    if rng.random() < 0.1:
        return rng.bytes(int(rng.integers(0, 512)))
    data = bytearray(seeds[int(rng.integers(len(seeds)))])
    for _ in range(int(rng.integers(1, 6))):
        at = int(rng.integers(len(data) + 1))
        kind = int(rng.integers(6))
        if kind == 0 and data:
            data[min(at, len(data) - 1)] ^= 1 << int(rng.integers(8))
        elif kind == 1:
            data[at:at] = rng.bytes(int(rng.integers(1, 9)))
        elif kind == 2:
            del data[at : at + int(rng.integers(1, 17))]
        elif kind == 3:
            data[at:at] = data[at : at + int(rng.integers(1, 33))] * int(rng.integers(2, 64))
        elif kind == 4:
            data[at:at] = _HOSTILE[int(rng.integers(len(_HOSTILE)))]
        else:
            digits = data.find(b"1", at)
            if digits >= 0:
                data[digits : digits + 1] = b"1" * int(rng.integers(300, 5000))
    return bytes(data)


def run(parser: Parser, inputs: int, seed: int = 0) -> dict[str, Any]:
    """Feed ``inputs`` mutated inputs to ``parser``; what it took, refused and let escape."""
    rng = np.random.default_rng(seed)
    taken = refused = 0
    escapes: list[dict[str, str]] = []
    escaped = 0
    began = time.perf_counter()
    for _ in range(inputs):
        data = mutate(rng, parser.seeds)
        try:
            parser.parse(data)
            taken += 1
        except parser.refusal:
            refused += 1
        except Exception as e:
            escaped += 1
            if len(escapes) < KEPT_ESCAPES:
                escapes.append({"error": f"{type(e).__name__}: {e}"[:200], "input": data.hex()})
    seconds = time.perf_counter() - began
    return {
        "inputs": inputs,
        "taken": taken,
        "refused": refused,
        "escapes": escaped,
        "examples": escapes,
        "seconds": round(seconds, 2),
    }


def run_all(inputs: int, seed: int = 0, only: tuple[str, ...] = ()) -> dict[str, Any]:
    names = only or tuple(PARSERS)
    return {name: run(PARSERS[name], inputs, seed) for name in names}


def render(result: dict[str, Any]) -> str:
    w = max(len("parser"), *map(len, result))
    lines = [f"{'parser':<{w}} {'inputs':>9} {'taken':>9} {'refused':>9} {'escapes':>8} {'s':>7}"]
    for name, r in result.items():
        lines.append(
            f"{name:<{w}} {r['inputs']:>9} {r['taken']:>9} {r['refused']:>9} {r['escapes']:>8} "
            f"{r['seconds']:>7.1f}"
        )
        lines += [f"    {e['error']}" for e in r["examples"]]
    return "\n".join(lines)
