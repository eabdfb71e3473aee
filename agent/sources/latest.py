"""The last value of each channel, for sources that report a value when it changes (OPC UA,
Sparkplug B): a device's row is its channels' last values, once all of them have one.

A value that is no finite number clears its channel, counted (``not_numeric``) unless it is
none at all; a row timed before 1970 or from the year 3000 on is refused (``bad_time``).
"""

import math
from collections.abc import Iterable

import numpy as np

from edgewatch.agent.framing import LATEST_TS, Block, Counts


class Latest:
    def __init__(self, channels: dict[str, tuple[str, ...]], counts: Counts) -> None:
        """``channels``: each device's, in the order of its rows."""
        self.channels, self.counts = channels, counts
        self._values: dict[tuple[str, str], float] = {}

    def set(self, device: str, channel: str, value: object) -> None:
        number = float(value) if isinstance(value, int | float) else math.nan
        if math.isfinite(number):
            self._values[device, channel] = number
            return
        self._values.pop((device, channel), None)
        if value is not None:
            self.counts.rejected["not_numeric"] += 1

    def forget(self, device: str, channel: str) -> None:
        self._values.pop((device, channel), None)

    def rows(self, devices: Iterable[str], ts: float) -> list[Block]:
        """The rows of ``devices`` whose channels all have a value, at time ``ts``."""
        if not 0 <= ts < LATEST_TS:
            self.counts.rejected["bad_time"] += 1
            return []
        blocks = []
        for device in devices:
            channels = self.channels[device]
            row = [self._values.get((device, channel)) for channel in channels]
            if all(value is not None for value in row):
                samples = np.array(row, np.float64).reshape(-1, 1)
                blocks.append(Block(device, ts, 1.0, samples, channels))
        return blocks
