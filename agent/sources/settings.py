"""The sources' settings, as ``[[sources]]`` entries of a config: a union tagged by ``type``.

A Modbus source names its ``tags``: each reads one value from a slave's table and gives it to a
channel of a device, as a process machine reads it.
"""

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal, Protocol, Self

from pydantic import Field, NonNegativeInt, StringConstraints, model_validator

from edgewatch.agent.credentials import Readable
from edgewatch.agent.decision_settings import Name, Seconds, Settings
from edgewatch.agent.features import ChannelName
from edgewatch.agent.table import TimeOrder

BAUD_RATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, 1000000, 2000000)
MODBUS_BAUD_RATES = (1200, 2400, 4800, *BAUD_RATES[:5])
TopicFilter = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00]*$")]
SerialPort = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class Mapped(Protocol):
    """A value a source maps to a channel of a device (a Modbus tag, an OPC UA node, …)."""

    @property
    def device(self) -> str: ...

    @property
    def channel(self) -> str: ...


def channels_by_device(items: Sequence[Mapped]) -> dict[str, tuple[str, ...]]:
    """Each device's channels, devices and channels in the order given."""
    found: dict[str, list[str]] = {}
    for item in items:
        found.setdefault(item.device, []).append(item.channel)
    return {device: tuple(channels) for device, channels in found.items()}


def _one_each(items: Sequence[Mapped], what: str) -> None:
    names = Counter(f"{item.device}.{item.channel}" for item in items)
    if repeated := sorted(name for name, n in names.items() if n > 1):
        raise ValueError(f"each device's channel comes from one {what}: {', '.join(repeated)}")


class _Source(Settings):
    device: Name
    channels: tuple[ChannelName, ...] = Field(min_length=1, max_length=256)
    sample_rate: float = Field(gt=0, le=10_000_000)


class SerialSource(_Source):
    """A serial port carrying CSV lines or binary frames (sync word, length, sequence, CRC-16)."""

    type: Literal["serial"]
    port: SerialPort
    baudrate: int = 115200
    format: Literal["csv", "binary"] = "binary"
    reconnect_max_s: Seconds = 30.0

    @model_validator(mode="after")
    def _rate(self) -> Self:
        if self.baudrate not in BAUD_RATES:
            raise ValueError(f"baudrate {self.baudrate} is not one of {list(BAUD_RATES)}")
        return self


class MqttSource(Settings):
    """Sensor blocks from the broker: JSON or the binary block format; ``device`` and channels
    come with each message."""

    type: Literal["mqtt"]
    topic: TopicFilter
    format: Literal["json", "binary"] = "json"
    max_inflight: int = Field(default=1000, ge=1, le=1_000_000)

    @property
    def topics(self) -> tuple[str, ...]:
        return (self.topic,)


SparkplugId = Annotated[str, StringConstraints(pattern=r"^[^+#/\x00]{1,64}$")]


class SparkplugMetric(Settings):
    """A metric of an edge node (``sparkplug_device`` left out) or of one of its devices, as a
    channel of an edgewatch device."""

    device: Name
    channel: ChannelName
    node: SparkplugId
    sparkplug_device: SparkplugId | None = None
    metric: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class SparkplugSource(Settings):
    """Process channels from Sparkplug B edge nodes of ``group``: their metrics (by name, or by
    the alias their BIRTH gave it), as ``metrics`` maps them; a device gets a row when one of
    its metrics changes and all of them are known."""

    type: Literal["sparkplug"]
    group: SparkplugId
    metrics: tuple[SparkplugMetric, ...] = Field(min_length=1, max_length=4096)
    max_inflight: int = Field(default=1000, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        _one_each(self.metrics, "metric")
        return self

    @property
    def topics(self) -> tuple[str, ...]:
        """A filter per edge node: its NBIRTH, NDATA, NDEATH and its devices' messages."""
        nodes = dict.fromkeys(m.node for m in self.metrics)
        return tuple(f"spBv1.0/{self.group}/+/{node}/#" for node in nodes)

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(channels_by_device(self.metrics))


class ReplaySource(_Source):
    """A recorded CSV or NPY file, at real time, ``speed`` times faster, or as fast as it goes."""

    type: Literal["replay"]
    path: Path
    speed: float | Literal["max"] = 1.0
    # The time of the first sample, in seconds since the epoch; by default the file's own (its
    # timestamp column), else when it starts.
    start_ts: float | None = None
    # Time the rows by the file's timestamp column, gaps and all; false spaces them evenly at
    # sample_rate. A time that goes back: "error" refuses the file, "sort" or "drop" take it.
    timestamps: bool = True
    time_order: TimeOrder = "error"
    # Rows [start, end) of the file (after time ordering), when not all of them.
    rows: tuple[NonNegativeInt, NonNegativeInt] | None = None

    @model_validator(mode="after")
    def _speed(self) -> Self:
        if self.speed != "max" and not 0 < float(self.speed) <= 10_000:
            raise ValueError("speed must be above 0 and at most 10000, or 'max'")
        if self.rows is not None and self.rows[1] <= self.rows[0]:
            raise ValueError(f"rows {list(self.rows)}: the end must come after the start")
        return self


Table = Literal["holding", "input", "coil", "discrete"]
ValueType = Literal["int16", "uint16", "int32", "uint32", "float32", "float64", "bit"]
Order = Literal["big", "little"]
# Registers (16-bit words) that each type spans.
WORDS: dict[ValueType, int] = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "float64": 4,
    "bit": 1,
}


class Tag(Settings):
    """One value: ``address`` in ``table`` of ``slave``, read as ``type`` (a register's ``bit``,
    or a coil or discrete input), then ``value * scale + offset``. ``word_order`` big puts the
    most significant register first; ``byte_order`` big, the high byte of each register."""

    device: Name
    channel: ChannelName
    slave: int = Field(default=1, ge=0, le=255)
    table: Table = "holding"
    address: int = Field(ge=0, le=65535)
    type: ValueType | None = None
    bit: int | None = Field(default=None, ge=0, le=15)
    word_order: Order = "big"
    byte_order: Order = "big"
    scale: float = 1.0
    offset: float = 0.0

    @model_validator(mode="after")
    def _shape(self) -> Self:
        bits = self.table in ("coil", "discrete")
        if bits and self.type not in (None, "bit"):
            raise ValueError(f"a {self.table} is one bit: type {self.type!r} does not fit it")
        if not bits and (self.type == "bit") != (self.bit is not None):
            raise ValueError("a register's bit needs both type = 'bit' and bit = 0..15")
        if bits and self.bit is not None:
            raise ValueError(f"a {self.table} is one bit already: leave out bit")
        if self.address + self.words > 65536:
            raise ValueError(f"{self.kind} at {self.address} runs past register 65535")
        return self

    @property
    def kind(self) -> ValueType:
        """The type, with its default: ``bit`` for coils and discrete inputs, else ``uint16``."""
        if self.type is not None:
            return self.type
        return "bit" if self.table in ("coil", "discrete") else "uint16"

    @property
    def words(self) -> int:
        return WORDS[self.kind]


class ModbusSource(Settings):
    """Modbus TCP (``host``, ``port``) or RTU on a serial line (``serial``, ``baudrate``,
    ``parity``, ``stopbits``): every ``interval_s`` each slave's tags are read, and each device
    gets a row of its channels. A slave that does not answer within ``timeout_s`` is left out of
    the polls for a while, doubling up to ``backoff_max_s``, while the others are polled on."""

    type: Literal["modbus"]
    transport: Literal["tcp", "rtu"]
    host: Annotated[str, StringConstraints(min_length=1, max_length=253)] | None = None
    port: int = Field(default=502, ge=1, le=65535)
    serial: SerialPort | None = None
    baudrate: int = 19200
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    interval_s: Seconds = 1.0
    timeout_s: float = Field(default=0.5, ge=0.01, le=60)
    backoff_max_s: Seconds = 60.0
    tags: tuple[Tag, ...] = Field(min_length=1, max_length=4096)

    @model_validator(mode="after")
    def _link(self) -> Self:
        if self.transport == "tcp" and (self.host is None or self.serial is not None):
            raise ValueError("Modbus TCP needs a host (and no serial)")
        if self.transport == "rtu":
            if self.serial is None or self.host is not None:
                raise ValueError("Modbus RTU needs a serial port (and no host)")
            if self.baudrate not in MODBUS_BAUD_RATES:
                raise ValueError(f"baudrate {self.baudrate} is not one of {MODBUS_BAUD_RATES}")
            if wrong := sorted({t.slave for t in self.tags if not 1 <= t.slave <= 247}):
                raise ValueError(f"RTU slaves are 1 to 247, not {wrong}")
        _one_each(self.tags, "tag")
        return self

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(channels_by_device(self.tags))


class OpcuaNode(Settings):
    """A variable of the server, by node id (``ns=2;s=Boiler.Temperature``, ``ns=3;i=1001``),
    as a channel of an edgewatch device."""

    device: Name
    channel: ChannelName
    node_id: Annotated[str, StringConstraints(pattern=r"^(ns=\d{1,5};)?[isgb]=.{1,4096}$")]


class OpcuaLink(Settings):
    """How to reach an OPC UA server: ``security`` ``None``, or ``Sign`` or ``SignAndEncrypt``
    with ``policy`` and the client's ``certificate`` and ``private_key`` (its subject
    alternative names carry ``application_uri``), and the ``server_certificate`` to trust (left
    out: the one the server presents). ``username`` and ``password_file`` log in; left out,
    anonymously."""

    url: Annotated[str, StringConstraints(pattern=r"^opc\.tcp://[^\s/]{1,253}(/\S*)?$")]
    timeout_s: float = Field(default=5.0, ge=0.1, le=600)
    security: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    policy: Literal["Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"] = (
        "Basic256Sha256"
    )
    certificate: Readable | None = None
    private_key: Readable | None = None
    server_certificate: Readable | None = None
    application_uri: Annotated[str, StringConstraints(min_length=1, max_length=256)] = (
        "urn:edgewatch:client"
    )
    username: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    password_file: Readable | None = None

    @model_validator(mode="after")
    def _login(self) -> Self:
        keys = self.certificate is not None and self.private_key is not None
        if (self.security != "None") != keys:
            raise ValueError(
                "security Sign or SignAndEncrypt goes with a certificate and a private_key,"
                " and None with neither"
            )
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs a username")
        return self


class OpcuaSource(OpcuaLink):
    """Subscriptions to an OPC UA server's variables, each sampled every ``sampling_s``; a
    device gets a row when one of its variables changes and all of them have a value."""

    type: Literal["opcua"]
    sampling_s: float = Field(default=1.0, ge=0.01, le=3600)
    reconnect_max_s: Seconds = 30.0
    nodes: tuple[OpcuaNode, ...] = Field(min_length=1, max_length=4096)

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        _one_each(self.nodes, "node")
        return self

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(channels_by_device(self.nodes))


SourceConfig = (
    SerialSource | MqttSource | ReplaySource | ModbusSource | SparkplugSource | OpcuaSource
)
Source = Annotated[SourceConfig, Field(discriminator="type")]
