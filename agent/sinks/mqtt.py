"""The agent's upstream connection: delivers the spool to the broker, in order, at least once.

One thread owns the connection. Each session gets a fresh client whose last will is ``offline``
(retained) on the status topic; once connected it publishes ``online`` (retained), subscribes the
side channels (feedback, model notices) and then hands the broker the spool's messages in id
order, a bounded number in flight. A message leaves the spool on its PUBACK (QoS 1) or once
written (QoS 0 telemetry). When the connection drops, the client and everything it had in
flight are abandoned; the next session starts again from the spool, with all that was waiting
marked as backlog, so alerts delivered late say ``historical: true``. Reconnects back off
exponentially up to the broker config's ``reconnect_max_s``.

paho calls back from its network thread while holding its own locks, so callbacks here only
post to a queue and wake the forwarder; they never take a lock of ours.
"""

import json
import logging
import queue
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edgewatch.agent.clock import Backoff
from edgewatch.agent.config import Broker
from edgewatch.agent.metrics import Histogram, Registry
from edgewatch.agent.mqtt import broker_url, make_client
from edgewatch.agent.sinks.spool import Message, Spool
from edgewatch.agent.supervisor import Spawn, thread

log = logging.getLogger(__name__)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
CONNECT_TIMEOUT_S = 10.0


def historical(payload: bytes) -> bytes:
    """An alert's payload marked as delivered late (as it was, if it is no JSON object)."""
    try:
        record = json.loads(payload)
    except ValueError:
        return payload
    if not isinstance(record, dict):
        return payload
    record["historical"] = True
    return json.dumps(record, separators=(",", ":")).encode()


class Forwarder:
    def __init__(
        self,
        broker: Broker,
        client_id: str,
        status_topic: str,
        spool: Spool,
        subscriptions: dict[str, Callable[[bytes], None]] | None = None,
        max_inflight: int = 64,
        delivered: Callable[[Message, float], None] | None = None,
        spawn: Spawn = thread,
    ) -> None:
        self.broker, self.client_id, self.status_topic = broker, client_id, status_topic
        self.spool = spool
        self.subscriptions = dict(subscriptions or {})
        self.max_inflight = max_inflight
        self.delivered = delivered
        self.latency: Histogram | None = None
        self.connected = False
        self.connects = 0
        self.last_error = ""
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._events: queue.SimpleQueue[tuple[str, object, float]] = queue.SimpleQueue()
        self._client: mqtt.Client | None = None
        self._backlog = 0
        self._spawn = spawn
        self._thread: threading.Thread | None = None

    def export_metrics(self, registry: Registry) -> None:
        self.latency = registry.histogram(
            "publish_latency_seconds",
            "From handing an alert to the broker to its PUBACK",
            LATENCY_BUCKETS,
        )
        registry.collect(
            "gauge",
            "mqtt_connected",
            "1 while the upstream connection is up",
            (),
            lambda: {(): float(self.connected)},
        )

    def start(self) -> None:
        """Connect and deliver, in a thread of its own; once, however often it is called."""
        if self._thread is None and not self._stopping.is_set():
            self._thread = self._spawn("forwarder", self._run, self._stopping)

    def notify(self) -> None:
        """New messages are in the spool."""
        self._wake.set()

    def status(self, record: dict[str, object]) -> None:
        """A passing notice on the status topic (QoS 0, not retained), when connected."""
        client = self._client
        if client is not None and self.connected:
            client.publish(self.status_topic, json.dumps(record), qos=0)

    def stop(self, flush_s: float = 5.0) -> None:
        """Deliver what the spool holds (for up to ``flush_s``), say ``offline`` and close."""
        deadline = time.monotonic() + flush_s
        while self.spool.rows and self.connected and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.01)
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=flush_s + CONNECT_TIMEOUT_S)

    def _run(self, stop: threading.Event) -> None:
        backoff = Backoff(self.broker.reconnect_max_s)
        while not stop.is_set():
            client = self._connect()
            if client is None:
                backoff.wait(stop)
                continue
            backoff.reset()
            try:
                self._session(client)
            finally:
                graceful = self._stopping.is_set() and self.connected
                if graceful:
                    self._goodbye(client)
                    client.disconnect()
                self.connected = False
                self._client = None
                client.loop_stop()

    def _connect(self) -> mqtt.Client | None:
        client = make_client(self.broker, self.client_id)
        self._will(client)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._events = queue.SimpleQueue()
        try:
            client.connect(self.broker.host, self.broker.port, self.broker.keepalive_s)
        except (OSError, ValueError) as e:
            self._failed(f"cannot reach {broker_url(self.broker)}: {e}")
            return None
        client.loop_start()
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while time.monotonic() < deadline and not self._stopping.is_set():
            try:
                kind, value, _ = self._events.get(timeout=0.05)
            except queue.Empty:
                continue
            if kind == "connack" and value == 0:
                self._ready(client)
                return client
            if kind in ("connack", "disconnect"):
                self._failed(f"{broker_url(self.broker)} refused the connection: {value}")
                break
        client.loop_stop()
        return None

    def _failed(self, reason: str) -> None:
        if reason != self.last_error:
            log.warning("mqtt: %s", reason)
        self.last_error = reason

    def _will(self, client: mqtt.Client) -> None:
        """What the broker publishes if the connection dies: ``offline`` on the status topic."""
        client.will_set(self.status_topic, "offline", qos=1, retain=True)

    def _announce(self, client: mqtt.Client) -> None:
        """What a new session says first: ``online``."""
        client.publish(self.status_topic, "online", qos=1, retain=True)

    def _goodbye(self, client: mqtt.Client) -> None:
        """What a session says when the agent stops."""
        client.publish(self.status_topic, "offline", qos=1, retain=True).wait_for_publish(2)

    def _send(self, client: mqtt.Client, message: Message, late: bool) -> mqtt.MQTTMessageInfo:
        """Publish a message of the spool, marked ``historical`` if it is an alert of the
        backlog."""
        payload = message.payload
        if late and message.kind == "alert":
            payload = historical(payload)
        return client.publish(message.topic, payload, qos=message.qos)

    def _tend(self, client: mqtt.Client) -> bool:
        """Each turn of a session, before the spool's next batch: whether to deliver it."""
        return True

    def _ready(self, client: mqtt.Client) -> None:
        self._backlog = self.spool.last_id()
        self._announce(client)
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        self._client, self.connected, self.last_error = client, True, ""
        self.connects += 1
        log.info("mqtt: connected to %s", broker_url(self.broker))

    def _session(self, client: mqtt.Client) -> None:
        inflight: dict[int, tuple[Message, float]] = {}
        try:
            self._deliver(client, inflight)
        finally:
            # What is in flight, or was never sent, goes again in the next session.
            self.spool.reject()

    def _deliver(self, client: mqtt.Client, inflight: dict[int, tuple[Message, float]]) -> None:
        while True:
            self._wake.clear()
            while True:
                try:
                    kind, value, at = self._events.get_nowait()
                except queue.Empty:
                    break
                if kind == "disconnect":
                    log.warning("mqtt: connection lost (%s)", value)
                    return
                if kind == "puback":
                    # Events are read here, after publish() returned, so a PUBACK always
                    # finds its message; status and QoS 0 messages have none to find.
                    assert isinstance(value, int)
                    sent = inflight.pop(value, None)
                    if sent is not None:
                        self._acked(sent, at)
            if self._stopping.is_set():
                return
            room = self.max_inflight - len(inflight) if self._tend(client) else 0
            batch = self.spool.begin(room) if room > 0 else []
            for n, message in enumerate(batch):
                sent_at = time.perf_counter()
                info = self._send(client, message, message.id <= self._backlog)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    self.spool.reject(batch[n:])
                    break
                if message.qos == 0:
                    self.spool.accept([message])
                else:
                    inflight[info.mid] = (message, sent_at)
            self._wake.wait(timeout=1.0)

    def _acked(self, sent: tuple[Message, float], at: float) -> None:
        message, sent_at = sent
        self.spool.accept([message])
        if self.latency is not None:
            self.latency.observe(at - sent_at)
        if self.delivered is not None:
            self.delivered(message, at)

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, code: ReasonCode, props: object
    ) -> None:
        self._events.put(("connack", code.value, time.perf_counter()))

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, code: ReasonCode, props: object
    ) -> None:
        self.connected = False
        self._events.put(("disconnect", str(code), time.perf_counter()))
        self._wake.set()

    def _on_publish(
        self, client: mqtt.Client, userdata: object, mid: int, code: ReasonCode, props: object
    ) -> None:
        self._events.put(("puback", mid, time.perf_counter()))
        self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        handler = self.subscriptions.get(message.topic)
        if handler is not None:
            handler(bytes(message.payload))
