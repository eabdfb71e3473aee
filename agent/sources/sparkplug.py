"""Sparkplug B messages into rows of process channels.

Per edge node it follows the births: NBIRTH and DBIRTH name each metric's alias, and give the
metrics their first values; NDATA and DDATA then carry metrics by alias (or name). A death
(NDEATH, DDEATH) or a new NBIRTH forgets what the node (or the device) said before. A message
of a node that has not been born, a metric whose alias no birth gave, and a sequence number
that skips are counted, by reason (and ``Counts.gaps``). Only the metrics the config maps are
kept, so what is held is bounded by the config.

Each message that changes a mapped metric gives its edgewatch device a row (``Latest``), when
all of the device's channels have a value, timed by the newest metric timestamp in it (else
the payload's, else now).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edgewatch.agent.framing import Block, Counts
from edgewatch.agent.sources.latest import Latest
from edgewatch.agent.sources.settings import SparkplugSource, channels_by_device
from edgewatch.agent.sparkplug import Payload, SparkplugError, decode

Where = tuple[str, str | None]  # an edge node, and one of its devices (None: the node itself)


@dataclass
class _Node:
    seq: int | None = None
    aliases: dict[Where, dict[int, str]] = field(default_factory=dict)


class SparkplugRows:
    """``(topic, payload)`` of an MQTT message into the blocks it gives, counting the rest."""

    def __init__(self, config: SparkplugSource, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.counts = Counts()
        self._channels: dict[tuple[Where, str], tuple[str, str]] = {
            ((m.node, m.sparkplug_device), m.metric): (m.device, m.channel) for m in config.metrics
        }
        self._latest = Latest(channels_by_device(config.metrics), self.counts)
        self._nodes: dict[str, _Node] = {m.node: _Node() for m in config.metrics}

    def __call__(self, topic: str, payload: bytes) -> list[Block]:
        parts = topic.split("/")
        if len(parts) not in (4, 5) or parts[3] not in self._nodes:
            self.counts.rejected["bad_topic"] += 1
            return []
        kind, node = parts[2], parts[3]
        where: Where = (node, parts[4] if len(parts) == 5 else None)
        if kind in ("NCMD", "DCMD"):
            return []
        try:
            message = decode(payload)
        except SparkplugError as e:
            self.counts.rejected[e.reason] += 1
            return []
        if kind in ("NDEATH", "DDEATH"):
            self._forget(where)
            return []
        if kind not in ("NBIRTH", "DBIRTH", "NDATA", "DDATA"):
            self.counts.rejected["bad_topic"] += 1
            return []
        if not self._in_sequence(self._nodes[node], kind, message.seq):
            return []
        if kind.endswith("BIRTH"):
            if kind == "NBIRTH":
                self._forget(where)
            self._nodes[node].aliases[where] = {
                m.alias: m.name
                for m in message.metrics
                if m.alias is not None and m.name is not None and (where, m.name) in self._channels
            }
        elif where not in self._nodes[node].aliases:
            self.counts.rejected["before_birth"] += 1
            return []
        self.counts.accepted += 1
        return self._blocks(where, message)

    def _in_sequence(self, node: _Node, kind: str, seq: int | None) -> bool:
        if seq is None or not 0 <= seq <= 255:
            self.counts.rejected["bad_seq"] += 1
            return False
        if kind != "NBIRTH" and node.seq is not None and seq != (node.seq + 1) % 256:
            self.counts.gaps += 1
        node.seq = seq
        return True

    def _forget(self, where: Where) -> None:
        node, device = where
        state = self._nodes[node]
        for gone in [w for w in state.aliases if device is None or w == where]:
            del state.aliases[gone]
        if device is None:
            state.seq = None
        for (at, _), key in self._channels.items():
            if at[0] == node and (device is None or at == where):
                self._latest.forget(*key)

    def _blocks(self, where: Where, message: Payload) -> list[Block]:
        aliases = self._nodes[where[0]].aliases[where]
        changed: set[str] = set()
        stamps = [message.timestamp] if message.timestamp is not None else []
        for metric in message.metrics:
            name = metric.name
            if name is None and metric.alias is not None:
                name = aliases.get(metric.alias)
            if name is None:
                self.counts.rejected["unknown_alias"] += 1
                continue
            key = self._channels.get((where, name))
            if key is None:
                continue
            changed.add(key[0])
            if metric.timestamp is not None:
                stamps.append(metric.timestamp)
            self._latest.set(*key, metric.value)
        ts = max(stamps) / 1000 if stamps else self.clock()
        return self._latest.rows(sorted(changed), ts)
