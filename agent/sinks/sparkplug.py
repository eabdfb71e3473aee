"""The upstream connection speaking Sparkplug B: the spool delivered as an edge node's messages.

It is the MQTT forwarder (``sinks.mqtt``) with the Sparkplug session around it. The edge node
``spBv1.0/<group>/…/<node>`` registers its NDEATH as the connection's last will, with the
session's ``bdSeq``; once connected it subscribes to its NCMD topic and publishes NBIRTH
(``bdSeq``, ``Node Control/Rebirth``). Each machine (an edgewatch device) is a Sparkplug
device: before its first data in a session comes its DBIRTH, with every metric it publishes and
its last value, and then DDATA by alias:

- ``alert/state`` (``raised``, ``escalated``, ``cleared``), ``alert/severity``, ``alert/id``,
  ``alert/score`` and ``alert/diagnosis`` from each alert record;
- ``score``, the peak calibrated score, from telemetry.

Every message but NDEATH carries the session's sequence number, 0 at NBIRTH and then 1 more
each, modulo 256. As the specification asks, BIRTH and DATA go at QoS 0; a message leaves the
spool once paho has written it to the connection, and whatever the spool held when the session
began goes as historical metrics. NCMD ``Node Control/Rebirth`` publishes the births again.

With a ``primary_host``, the node follows that host application's ``spBv1.0/STATE/<host>``: it
births and delivers only while the host says it is online, and keeps the spool while it is not.
When the host comes back, the births go again and what waited goes as historical.
"""

import itertools
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

import paho.mqtt.client as mqtt

from edgewatch.agent.config import Broker
from edgewatch.agent.sinks.mqtt import Forwarder
from edgewatch.agent.sinks.spool import Message, Spool
from edgewatch.agent.sparkplug import (
    BOOLEAN,
    DOUBLE,
    STRING,
    UINT64,
    Metric,
    Payload,
    SparkplugError,
    Value,
    decode,
    encode,
)
from edgewatch.agent.supervisor import Spawn, thread

log = logging.getLogger(__name__)
NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
# A device's metrics: (name, data type); each one's alias is its place here, after the
# device's own base (``ALIASES`` per device).
METRICS = (
    ("alert/state", STRING),
    ("alert/severity", STRING),
    ("alert/id", STRING),
    ("alert/score", DOUBLE),
    ("alert/diagnosis", STRING),
    ("score", DOUBLE),
)
ALIASES = 8
# Devices whose aliases and last values are kept; the least recently published beyond it are
# forgotten, and born again (with new aliases) if they come back.
MAX_DEVICES = 10_000


def device_id(device: str) -> str:
    """A Sparkplug device id for an edgewatch device: ``+``, ``#`` and ``/`` become ``_``.

    >>> device_id("line-2/pump+1")
    'line-2_pump_1'
    """
    return device.translate(str.maketrans("+#/", "___"))


def _now_ms() -> int:
    return int(time.time() * 1000)


class SparkplugForwarder(Forwarder):
    def __init__(
        self,
        broker: Broker,
        client_id: str,
        status_topic: str,
        spool: Spool,
        node: tuple[str, str],
        primary_host: str | None = None,
        subscriptions: dict[str, Callable[[bytes], None]] | None = None,
        spawn: Spawn = thread,
    ) -> None:
        """``node``: the group id and the edge node id."""
        self.group, self.node = node
        own = {self.topic("NCMD"): self._command}
        if primary_host is not None:
            own[f"{NAMESPACE}/STATE/{primary_host}"] = self._state
        super().__init__(
            broker, client_id, status_topic, spool, {**(subscriptions or {}), **own}, spawn=spawn
        )
        self.primary_host = primary_host
        self.bd_seq = -1
        self.host_online = threading.Event()
        self._seq = 0
        self._devices: OrderedDict[str, int] = OrderedDict()
        self._bases = itertools.count(ALIASES, ALIASES)
        self._values: dict[str, dict[str, Value]] = {}
        self._born: set[str] | None = None
        self._rebirth = threading.Event()

    def topic(self, kind: str, device: str | None = None) -> str:
        tail = f"/{device_id(device)}" if device is not None else ""
        return f"{NAMESPACE}/{self.group}/{kind}/{self.node}{tail}"

    def _will(self, client: mqtt.Client) -> None:
        """The NDEATH of the session to come: ``bdSeq`` one more than the last session's."""
        will = self._death((self.bd_seq + 1) % 256)
        client.will_set(self.topic("NDEATH"), will, qos=1, retain=False)

    def _death(self, bd_seq: int) -> bytes:
        return encode(Payload(_now_ms(), (Metric("bdSeq", datatype=UINT64, value=bd_seq),)))

    def _announce(self, client: mqtt.Client) -> None:
        """The session is this ``bdSeq``'s; the births come at its first turn (``_tend``)."""
        self.bd_seq = (self.bd_seq + 1) % 256
        self._born = None

    def _births(self, client: mqtt.Client) -> None:
        self._seq, self._born = 0, set()
        self._backlog = self.spool.last_id()
        metrics = (
            Metric("bdSeq", datatype=UINT64, value=self.bd_seq),
            Metric(REBIRTH, datatype=BOOLEAN, value=False),
        )
        client.publish(self.topic("NBIRTH"), self._payload(metrics), qos=0)
        for device in list(self._devices):
            self._birth(client, device)

    def _birth(self, client: mqtt.Client, device: str) -> None:
        base = self._devices.get(device)
        if base is None:
            base = self._devices[device] = next(self._bases)
            if len(self._devices) > MAX_DEVICES:
                gone, _ = self._devices.popitem(last=False)
                self._values.pop(gone, None)
                if self._born is not None:
                    self._born.discard(gone)
        values = self._values.get(device, {})
        metrics = tuple(
            Metric(name, base + i, datatype=kind, value=values.get(name))
            for i, (name, kind) in enumerate(METRICS)
        )
        client.publish(self.topic("DBIRTH", device), self._payload(metrics), qos=0)
        assert self._born is not None
        self._born.add(device)

    def _payload(self, metrics: tuple[Metric, ...]) -> bytes:
        payload = encode(Payload(_now_ms(), metrics, self._seq))
        self._seq = (self._seq + 1) % 256
        return payload

    def _goodbye(self, client: mqtt.Client) -> None:
        client.publish(self.topic("NDEATH"), self._death(self.bd_seq), qos=1).wait_for_publish(2)

    def _tend(self, client: mqtt.Client) -> bool:
        """Births when a session or the primary host begins, or a rebirth is asked; delivery
        while born."""
        if self.primary_host is not None and not self.host_online.is_set():
            self._born = None
            return False
        if self._born is None or self._rebirth.is_set():
            self._rebirth.clear()
            self._births(client)
        return True

    def _command(self, payload: bytes) -> None:
        """An NCMD: a rebirth when it asks for one (a payload that is none is ignored)."""
        try:
            metrics = decode(payload).metrics
        except SparkplugError as e:
            log.warning("sparkplug: an NCMD that is no payload: %s", e)
            return
        if any(m.name == REBIRTH and m.value is True for m in metrics):
            self._rebirth.set()
            self.notify()

    def _state(self, payload: bytes) -> None:
        """The primary host's STATE: ``{"online": true|false, "timestamp": …}``."""
        try:
            online = json.loads(payload).get("online")
        except (ValueError, AttributeError, RecursionError):
            online = None
        if not isinstance(online, bool):
            log.warning("sparkplug: a STATE of %s without online true or false", self.primary_host)
            return
        if online:
            self.host_online.set()
        else:
            self.host_online.clear()
        self.notify()

    def _send(self, client: mqtt.Client, message: Message, late: bool) -> mqtt.MQTTMessageInfo:
        record = json.loads(message.payload)
        device = str(record["device"])
        if message.kind == "alert":
            values: dict[str, Value] = {
                "alert/state": record["state"],
                "alert/severity": record["severity"],
                "alert/id": record["alert_id"],
                "alert/score": float(record["score"]),
                "alert/diagnosis": str(record.get("diagnosis", "")),
            }
            ts = _iso_ms(str(record["ts"]))
        else:
            values, ts = {"score": float(record["score_max"])}, int(record["ts"] * 1000)
        assert self._born is not None, "delivery comes after the births"
        if device not in self._born:
            self._birth(client, device)
        self._values.setdefault(device, {}).update(values)
        self._devices.move_to_end(device)
        base = self._devices[device]
        aliases = {name: base + i for i, (name, _) in enumerate(METRICS)}
        kinds = dict(METRICS)
        metrics = tuple(
            Metric(None, aliases[name], ts, kinds[name], value, late)
            for name, value in values.items()
        )
        return client.publish(self.topic("DDATA", device), self._payload(metrics), qos=0)


def _iso_ms(text: str) -> int:
    """Milliseconds since the epoch of an alert's ISO timestamp."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
