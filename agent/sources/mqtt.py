"""Sensor data from the broker, with a bound on messages in flight: blocks, JSON or binary
(``type = "mqtt"``), or Sparkplug B metrics made rows (``type = "sparkplug"``,
``sources.sparkplug``).

The source speaks MQTT 5 and announces ``max_inflight`` as its receive maximum, so the broker
never has more unacknowledged messages out to it than that. A message is acknowledged once it
has been decoded and taken by the pipeline; while the pipeline's inbox is full that waits, and
the broker holds the rest.
"""

import logging
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edgewatch.agent.clock import Backoff
from edgewatch.agent.config import Broker
from edgewatch.agent.framing import Block, Counts, FrameError, decode_block, decode_json
from edgewatch.agent.mqtt import broker_url, make_client
from edgewatch.agent.sources import Offer
from edgewatch.agent.sources.settings import MqttSource, SparkplugSource
from edgewatch.agent.sources.sparkplug import SparkplugRows
from edgewatch.agent.supervisor import Guard, unguarded

log = logging.getLogger(__name__)


class BlockMessages:
    """A message that is one block, JSON or binary; a refused one is counted by reason."""

    def __init__(self, format: str) -> None:
        self.decode = decode_json if format == "json" else decode_block
        self.counts = Counts()

    def __call__(self, topic: str, payload: bytes) -> list[Block]:
        try:
            block = self.decode(payload)
        except FrameError as e:
            self.counts.rejected[e.reason] += 1
            return []
        self.counts.accepted += 1
        return [block]


class MqttReader:
    def __init__(
        self,
        config: MqttSource | SparkplugSource,
        broker: Broker,
        client_id: str,
        offer: Offer,
        guard: Guard = unguarded,
    ) -> None:
        """``guard`` wraps the callbacks that paho runs on its network thread."""
        self.config, self.broker, self.client_id, self.offer = config, broker, client_id, offer
        self.guard = guard
        self.decode = (
            SparkplugRows(config)
            if isinstance(config, SparkplugSource)
            else BlockMessages(config.format)
        )
        self.counts = self.decode.counts
        self.connected = threading.Event()
        self._lost = threading.Event()

    def run(self, stop: threading.Event) -> None:
        backoff = Backoff(self.broker.reconnect_max_s)
        while not stop.is_set():
            self._lost.clear()
            client = make_client(self.broker, self.client_id, MQTTProtocolVersion.MQTTv5)
            client.on_connect = self.guard(self._on_connect)
            client.on_message = self.guard(self._on_message)
            client.on_disconnect = self.guard(self._on_disconnect)
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.ReceiveMaximum = self.config.max_inflight
            try:
                client.connect(
                    self.broker.host,
                    self.broker.port,
                    self.broker.keepalive_s,
                    clean_start=True,
                    properties=properties,
                )
            except (OSError, ValueError) as e:
                log.warning("mqtt source: cannot reach %s: %s", broker_url(self.broker), e)
                backoff.wait(stop)
                continue
            backoff.reset()
            client.loop_start()
            while not (stop.is_set() or self._lost.is_set()):
                stop.wait(0.2)
            if stop.is_set():
                client.disconnect()
            client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, code: ReasonCode, props: object
    ) -> None:
        if code.is_failure:
            log.warning("mqtt source: %s refused: %s", broker_url(self.broker), code)
            return
        client.subscribe([(topic, 1) for topic in self.config.topics])
        self.connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, code: ReasonCode, props: object
    ) -> None:
        self.connected.clear()
        self._lost.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        for block in self.decode(message.topic, bytes(message.payload)):
            self.offer(block)
