"""Fan-out: each batch of records to every sink, with each device's telemetry at most once an
interval."""

from collections.abc import Sequence

import numpy as np

from edgewatch.agent.sinks.outputs import Record, Sink, Telemetry


class Fanout(Sink):
    """The pipeline's one output: a sink that writes to every sink it holds. Telemetry says,
    per device, the peak score since the last record it gave, once ``interval_s`` of signal
    time has passed."""

    def __init__(self, sinks: Sequence[Sink], interval_s: float = 10.0) -> None:
        super().__init__()
        self.sinks = list(sinks)
        self.interval_s = interval_s
        self._devices: dict[str, tuple[float, float]] = {}

    def telemetry(self, device: str, ts: float, peak: float) -> Telemetry | None:
        """The device's telemetry record when one is due at ``ts``, else None."""
        at, held = self._devices.get(device, (-np.inf, -np.inf))
        held = max(held, peak)
        if ts - at < self.interval_s:
            self._devices[device] = (at, held)
            return None
        self._devices[device] = (ts, -np.inf)
        return Telemetry(device, ts, held) if np.isfinite(held) else None

    def forget(self, device: str) -> None:
        self._devices.pop(device, None)

    def _start(self) -> None:
        for sink in self.sinks:
            sink.start()

    def _write(self, records: Sequence[Record]) -> None:
        for sink in self.sinks:
            sink.write(records)

    def _close(self) -> None:
        for sink in self.sinks:
            sink.close()
