"""Fan-out: every alert to every sink, and each device's telemetry at most once an interval."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgewatch.agent.alerts import Alert
from edgewatch.agent.sinks.outputs import Sink


@dataclass
class _Telemetry:
    at: float = -np.inf
    peak: float = -np.inf


class Fanout:
    """The pipeline's one output. Telemetry says, per device, the peak score since the last
    record it sent, once ``interval_s`` of signal time has passed."""

    def __init__(self, sinks: Sequence[Sink], interval_s: float = 10.0) -> None:
        self.sinks = list(sinks)
        self.interval_s = interval_s
        self._devices: dict[str, _Telemetry] = {}

    def send(self, alert: Alert) -> None:
        for sink in self.sinks:
            sink.send(alert)

    def telemetry(self, device: str, ts: float, peak: float) -> None:
        state = self._devices.get(device)
        if state is None:
            state = self._devices[device] = _Telemetry()
        state.peak = max(state.peak, peak)
        if ts - state.at < self.interval_s:
            return
        record: dict[str, float | int | str] = {"ts": ts, "score_max": state.peak}
        state.at, state.peak = ts, -np.inf
        for sink in self.sinks:
            sink.telemetry(device, record)

    def forget(self, device: str) -> None:
        self._devices.pop(device, None)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
