"""The sinks the pipeline hands its records to: the MQTT spool, stdout and JSON-lines files.

Every sink keeps one lifecycle, as Telegraf's outputs do, written once on ``Sink``: ``start``,
then ``write`` batches of records, then ``close``. Start and close may be called any number of
times; the first call does the work. ``close`` waits for a write in progress, and a write after
it raises ``SinkClosed``: nothing is half-written to a sink that is going away. A sink written
to before ``start`` starts then.
"""

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from edgewatch.agent.alerts import Alert
from edgewatch.agent.sinks.spool import AlertStep, Entry, Spool


@dataclass(frozen=True)
class Telemetry:
    """A device's peak calibrated score since its last telemetry record."""

    device: str
    ts: float
    score_max: float


Record = Alert | Telemetry


class SinkClosed(RuntimeError):
    """A write to a sink that was closed."""


class Sink(ABC):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = self._closed = False

    def start(self) -> None:
        with self._lock:
            if not (self._started or self._closed):
                self._start()
                self._started = True

    def write(self, records: Sequence[Record]) -> None:
        with self._lock:
            if self._closed:
                raise SinkClosed(f"{type(self).__name__}: written to after close")
            if not self._started:
                self._start()
                self._started = True
            self._write(records)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._started:
                    self._close()

    def _start(self) -> None:  # noqa: B027 (a hook: most sinks have nothing to open)
        """Open what the sink writes to."""

    @abstractmethod
    def _write(self, records: Sequence[Record]) -> None: ...

    def _close(self) -> None:  # noqa: B027 (a hook: most sinks have nothing to let go of)
        """Let go of what ``_start`` opened."""


class Lines(Sink):
    """One JSON alert per line, flushed after each batch; telemetry is not written."""

    def __init__(self, stream: TextIO | None = None, path: Path | None = None) -> None:
        """Write to ``stream``, or append to the file at ``path`` (opened at start)."""
        super().__init__()
        self.stream, self.path = stream, path

    @classmethod
    def file(cls, path: Path) -> "Lines":
        return cls(path=path)

    def _start(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.stream = self.path.open("a", encoding="utf-8")

    def _write(self, records: Sequence[Record]) -> None:
        assert self.stream is not None
        lines = [r.model_dump_json() + "\n" for r in records if isinstance(r, Alert)]
        if lines:
            self.stream.writelines(lines)
            self.stream.flush()

    def _close(self) -> None:
        if self.path is not None and self.stream is not None:
            self.stream.close()


class Spooled(Sink):
    """Alerts (QoS 1) and, when asked, telemetry (QoS 0) into the spool, each batch in one
    transaction, then a nudge to the forwarder."""

    def __init__(
        self, spool: Spool, topics: str, notify: Callable[[], None], telemetry: bool
    ) -> None:
        super().__init__()
        self.spool, self.topics, self.notify = spool, topics, notify
        self.with_telemetry = telemetry

    def _write(self, records: Sequence[Record]) -> None:
        entries = []
        for record in records:
            if isinstance(record, Alert):
                step = AlertStep(record.device, record.sequence, record.state)
                payload = record.model_dump_json().encode()
                entries.append(Entry("alert", self.topics + "alerts", payload, 1, step))
            elif self.with_telemetry:
                payload = json.dumps(
                    {"device": record.device, "ts": record.ts, "score_max": record.score_max}
                ).encode()
                entries.append(Entry("telemetry", self.topics + "scores", payload, 0))
        if entries:
            self.spool.add(entries)
            self.notify()
