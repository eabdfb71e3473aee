"""The agent's configuration: TOML read into frozen, validated models.

Sources and sinks are discriminated unions on ``type``. Environment variables override the file:
``EDGEWATCH_MQTT__HOST=broker`` sets ``mqtt.host``, ``EDGEWATCH_SOURCES__0__PORT=/dev/ttyS1``
sets the first source's port; each value is read as TOML when it parses as a TOML value, else as
a string. Secrets come from files: ``password_file`` and TLS key paths that are relative are
looked up in ``$CREDENTIALS_DIRECTORY``, where systemd's ``LoadCredential=`` puts them.

Every problem is reported at once, one line each, as ``path: message``.
"""

import os
import re
import tomllib
from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import (
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from edgewatch.agent.credentials import Readable, credential
from edgewatch.agent.decision_settings import (
    Decision,
    DriftSettings,
    Gate,
    Name,
    Seconds,
    Settings,
    ShadowSettings,
)
from edgewatch.agent.features import ChannelName, FeatureSpec
from edgewatch.agent.onsite.settings import Adapting, Learning
from edgewatch.agent.regimes import keys
from edgewatch.agent.schema import problems
from edgewatch.agent.sources.settings import (
    ModbusSource,
    MqttSource,
    OpcuaSource,
    Source,
    SourceConfig,
    SparkplugId,
    SparkplugSource,
)

ENV_PREFIX = "EDGEWATCH_"

Topic = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^#+\x00]*$")]


class ConfigError(ValueError):
    """A config that cannot be used; one ``path: message`` line per problem."""


class Tls(Settings):
    """TLS to the broker; ``cert`` and ``key`` together authenticate the agent by certificate."""

    ca: Readable
    cert: Readable | None = None
    key: Readable | None = None

    @model_validator(mode="after")
    def _files(self) -> Self:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together: give both or neither")
        return self


class Broker(Settings):
    """The MQTT broker that sources and sinks of type mqtt share."""

    host: Annotated[str, StringConstraints(min_length=1, max_length=253)] = "localhost"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: Name | None = None
    username: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    password_file: Readable | None = None
    tls: Tls | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    # Reconnects back off from 0.1 s, doubling up to this: a broker that comes back is found
    # within a few seconds, and a connect attempt costs the broker little.
    reconnect_max_s: Seconds = 3.0

    @model_validator(mode="after")
    def _login(self) -> Self:
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs a username")
        return self

    def password(self) -> str | None:
        """The password, read from its file now (so a rotated credential is picked up)."""
        if self.password_file is None:
            return None
        return credential(self.password_file).read_text().strip()


class Upstream(Settings):
    """A sink to the broker, through the spool; score telemetry too when asked."""

    telemetry: bool = False
    telemetry_interval_s: Seconds = 10.0


class MqttSink(Upstream):
    """Alerts at QoS 1 under ``<topic_root>alerts``; score telemetry at QoS 0 when asked."""

    type: Literal["mqtt"]


class SparkplugSink(Upstream):
    """Alerts and telemetry as a Sparkplug B edge node ``node`` (the agent's device by default)
    of ``group``, through the spool like the mqtt sink, instead of it. With ``primary_host``
    the node delivers only while that host application's STATE says it is online."""

    type: Literal["sparkplug"]
    group: SparkplugId
    node: SparkplugId | None = None
    primary_host: SparkplugId | None = None


class StdoutSink(Settings):
    type: Literal["stdout"]


class JsonlSink(Settings):
    type: Literal["jsonl"]
    path: Path


SinkConfig = MqttSink | SparkplugSink | StdoutSink | JsonlSink
Sink = Annotated[SinkConfig, Field(discriminator="type")]


class Model(Settings):
    """The default bundle, which scores every device that no ``[[machines]]`` entry claims, and
    how to trust bundles. A bundle may arrive later; the key must be readable now. ``threads``
    serve both onnxruntime and the featurizer's kernels (more than one runs the JIT kernels: see
    ``kernels.runtime``)."""

    bundle: Path | None = None
    public_key: Readable | None = None
    threads: int = Field(default=1, ge=1, le=64)
    watch: bool = True
    # Without a public_key, a notice on the model topic may name only a bundle under this folder
    # (and with neither, notices are refused): anyone who can publish there could load a model.
    notice_root: Path | None = None


DevicePattern = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.*?\[\]!-]+$")
]


class SpeedTag(Settings):
    """A process tag that gives a waveform machine's blocks their speed channel, named
    ``as_channel`` (the ``channel`` of its features' ``speed``, of kind ``value``): the latest
    value of ``channel`` of ``device``, while it is at most ``max_age_s`` from the block."""

    device: Name
    channel: ChannelName
    max_age_s: Seconds = 10.0
    as_channel: ChannelName = "speed"


class Machine(Settings):
    """Devices bound to their own model: either a shipped ``bundle`` that they share (watched
    and hot-reloaded like the default), or ``learn``: each device learns its normal on the
    gateway from the ``features`` it is given. ``devices`` are names or patterns (``pump-*``,
    ``press-[12]``); a device belongs to the first entry that claims it. ``adapt``: a machine
    that learns follows its normal unattended. ``speed_tag``: a process tag gives its blocks
    their speed. ``decision`` overrides the agent's ``[decision]``, field by field."""

    name: Name
    devices: tuple[DevicePattern, ...] = Field(min_length=1, max_length=256)
    bundle: Path | None = None
    learn: Learning | None = None
    features: FeatureSpec | None = None
    adapt: Adapting | None = None
    speed_tag: SpeedTag | None = None
    decision: Decision = Decision()

    @model_validator(mode="after")
    def _one_model(self) -> Self:
        if (self.bundle is None) == (self.learn is None):
            raise ValueError("give a machine either a bundle or a [learn] table, not both")
        if (self.learn is None) != (self.features is None):
            raise ValueError("learning on site needs [features], and only learning takes them")
        if self.adapt is not None and self.learn is None:
            raise ValueError("only a machine that learns on site can adapt: give it [learn]")
        if self.learn is not None and self.learn.regimes and self.features is not None:
            keys(self.features, self.learn.regimes)
        speed = self.features.speed if self.features is not None else None
        tag = self.speed_tag
        if (
            tag is not None
            and self.features is not None
            and (speed is None or speed.kind != "value" or speed.channel != tag.as_channel)
        ):
            raise ValueError(
                f"speed_tag fills channel {tag.as_channel!r}: the features need a speed of"
                " kind 'value' on that channel"
            )
        return self

    def claims(self, device: str) -> bool:
        return any(fnmatchcase(device, pattern) for pattern in self.devices)


class Spool(Settings):
    """The store-and-forward spool (SQLite): alerts wait here until the broker acknowledges."""

    path: Path = Path("/var/lib/edgewatch/spool.sqlite")
    max_rows: int = Field(default=100_000, ge=10, le=100_000_000)
    max_bytes: int = Field(default=64 << 20, ge=1 << 16, le=1 << 40)


class Http(Settings):
    """``/healthz`` and ``/metrics``; loopback unless told otherwise."""

    host: Annotated[str, StringConstraints(min_length=1, max_length=253)] = "127.0.0.1"
    port: int = Field(default=9108, ge=1, le=65535)


class AgentConfig(Settings):
    site: Name
    device: Name
    topic_root: Topic = "edgewatch/{site}/{device}/"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    model: Model = Model()
    machines: tuple[Machine, ...] = Field(default=(), max_length=1000)
    # Where devices that learn on site keep their baseline and their learned bundle.
    learning_dir: Path = Path("/var/lib/edgewatch/learned")
    sources: tuple[Source, ...] = Field(min_length=1, max_length=64)
    sinks: tuple[Sink, ...] = Field(min_length=1, max_length=16)
    mqtt: Broker | None = None
    decision: Decision = Decision()
    drift: DriftSettings = DriftSettings()
    shadow: ShadowSettings = ShadowSettings()
    spool: Spool = Spool()
    feedback_db: Path = Path("/var/lib/edgewatch/feedback.sqlite")
    http: Http = Http()
    # Devices whose streaming state is kept; the least recently seen beyond it are forgotten.
    max_devices: int = Field(default=1000, ge=1, le=100_000)

    @model_validator(mode="before")
    @classmethod
    def _inherit_decision(cls, data: Any) -> Any:
        """Each machine's decision: the agent's, with the machine's own fields over it."""
        if not isinstance(data, dict) or not isinstance(data.get("machines"), list | tuple):
            return data
        base = data.get("decision", {})
        base = base.model_dump(exclude_unset=True) if isinstance(base, Decision) else base
        if not isinstance(base, dict):
            return data
        machines = [
            {**m, "decision": {**base, **m.get("decision", {})}}
            if isinstance(m, dict) and isinstance(m.get("decision", {}), dict)
            else m
            for m in data["machines"]
        ]
        return {**data, "machines": machines}

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.model.bundle is None and not self.machines:
            raise ValueError("nothing to score with: give model.bundle, or [[machines]]")
        names = [m.name for m in self.machines]
        if repeated := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"machines need names of their own: {', '.join(repeated)} repeat")
        uses_mqtt = [
            f"{kind}[{i}]"
            for kind, items in (("sources", self.sources), ("sinks", self.sinks))
            for i, item in enumerate(items)
            if item.type in ("mqtt", "sparkplug")
        ]
        if uses_mqtt and self.mqtt is None:
            raise ValueError(f"{', '.join(uses_mqtt)} need an [mqtt] broker section")
        if len([s for s in self.sinks if isinstance(s, Upstream)]) > 1:
            raise ValueError("one upstream: give one sink of type mqtt or sparkplug, not more")
        try:
            self.topic_root.format(site=self.site, device=self.device)
        except (KeyError, IndexError, ValueError):
            raise ValueError(
                f"topic_root {self.topic_root!r} may use only {{site}} and {{device}}"
            ) from None
        return self

    @field_validator("sources")
    @classmethod
    def _devices(cls, sources: tuple[Source, ...]) -> tuple[Source, ...]:
        devices = [
            device
            for s in sources
            if not isinstance(s, MqttSource)
            for device in (
                s.devices
                if isinstance(s, ModbusSource | SparkplugSource | OpcuaSource)
                else (s.device,)
            )
        ]
        if repeated := sorted({d for d in devices if devices.count(d) > 1}):
            raise ValueError(f"a device comes from one source, not several: {repeated}")
        return sources

    @property
    def topics(self) -> str:
        """The topic root with site and device filled in."""
        return self.topic_root.format(site=self.site, device=self.device)

    @property
    def client_id(self) -> str:
        """The MQTT client id: the configured one, else ``edgewatch-<site>-<device>``."""
        given = self.mqtt.client_id if self.mqtt is not None else None
        return given or f"edgewatch-{self.site}-{self.device}"


def _override(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """``data`` with every ``EDGEWATCH_A__B__0__C`` variable applied at ``a.b[0].c``."""
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except (ValueError, RecursionError):  # not a TOML value: the text itself
            value = raw
        node: Any = data
        for i, key in enumerate(path[:-1]):
            step: str | int = int(key) if re.fullmatch(r"\d{1,6}", key) else key
            if isinstance(node, list) and isinstance(step, int) and step < len(node):
                node = node[step]
            elif isinstance(node, dict) and isinstance(step, str):
                node = node.setdefault(step, {})
            else:
                raise ConfigError(f"{name}: no {'.'.join(path[: i + 1])} to override")
        last = path[-1]
        if isinstance(node, list) and re.fullmatch(r"\d{1,6}", last) and int(last) < len(node):
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"{name}: no {'.'.join(path)} to override")
    return data


def parse_config(text: str, env: Mapping[str, str] | None = None) -> AgentConfig:
    """A validated config from TOML ``text`` and the ``EDGEWATCH_`` variables in ``env``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}") from None
    except (ValueError, RecursionError) as e:  # an integer of too many digits, too deep
        raise ConfigError(f"not valid TOML: {type(e).__name__}: {e}"[:300]) from None
    return validate(_override(data, os.environ if env is None else env))


def validate(data: Mapping[str, Any]) -> AgentConfig:
    """A validated config from its parsed tables; ``ConfigError`` with a line per problem."""
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError("\n".join(problems(e, _TAGS))) from None


def load_config(path: Path, env: Mapping[str, str] | None = None) -> AgentConfig:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: {getattr(e, 'strerror', None) or e}") from None
    return parse_config(text, env)


def _tags(*unions: Any) -> set[str]:
    """The ``type`` of each member of the tagged ``unions``."""
    return {get_args(m.model_fields["type"].annotation)[0] for u in unions for m in get_args(u)}


_TAGS = _tags(SourceConfig, SinkConfig, Gate)
