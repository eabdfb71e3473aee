"""Speed from a process tag: the latest value of a tag (an rpm over Modbus, OPC UA or MQTT) made
the speed channel of a waveform machine's blocks, as a tachometer's would be.

Each block that carries a tag's channel from its device updates the tag, at the time of the
block's last sample. Each block of a machine with a ``speed_tag`` then gets one more channel,
``as_channel``, holding the tag's value throughout, or NaN when the tag is unknown or further
than ``max_age_s`` from the block's start: its windows then have no speed, and are dropped and
counted (``no_speed``) like a tachometer's without pulses. A block without channel names gets
the channel last. Only the configured tags are kept.
"""

import math
from collections.abc import Sequence

import numpy as np

from edgewatch.agent.config import Machine
from edgewatch.agent.framing import Block
from edgewatch.agent.machines import Route


class SpeedTags:
    def __init__(self, machines: Sequence[Machine]) -> None:
        self._channels: dict[str, set[str]] = {}
        for machine in machines:
            if machine.speed_tag is not None:
                tag = machine.speed_tag
                self._channels.setdefault(tag.device, set()).add(tag.channel)
        self._latest: dict[tuple[str, str], tuple[float, float]] = {}

    def __call__(self, block: Block, route: Route | None) -> Block:
        """``block``, having updated the tags it carries, with its speed channel if its machine
        takes one."""
        for channel in self._channels.get(block.device, ()):
            if channel in block.channels and block.samples.shape[1]:
                value = float(block.samples[block.channels.index(channel), -1])
                if math.isfinite(value):
                    last = block.ts + (block.samples.shape[1] - 1) / block.sample_rate
                    self._latest[block.device, channel] = (last, value)
        tag = route.machine.speed_tag if route is not None and route.machine is not None else None
        if tag is None:
            return block
        at, value = self._latest.get((tag.device, tag.channel), (math.nan, math.nan))
        if not abs(block.ts - at) <= tag.max_age_s:
            value = math.nan
        filled = np.full((1, block.samples.shape[1]), value, np.float32)
        channels = (*block.channels, tag.as_channel) if block.channels else ()
        samples = np.concatenate([block.samples, filled])
        return Block(block.device, block.ts, block.sample_rate, samples, channels, block.sequence)
