"""The sinks the pipeline hands alerts to: the MQTT spool, stdout and JSON-lines files."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TextIO

from edgewatch.agent.alerts import Alert
from edgewatch.agent.sinks.spool import AlertStep, Spool


class Sink(Protocol):
    def send(self, alert: Alert) -> None: ...

    def telemetry(self, device: str, record: dict[str, float | int | str]) -> None: ...

    def close(self) -> None: ...


class Lines:
    """One JSON alert per line, flushed as it is written."""

    def __init__(self, stream: TextIO, owned: bool = False) -> None:
        self.stream, self.owned = stream, owned

    @classmethod
    def file(cls, path: Path) -> "Lines":
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(path.open("a", encoding="utf-8"), owned=True)

    def send(self, alert: Alert) -> None:
        self.stream.write(alert.model_dump_json() + "\n")
        self.stream.flush()

    def telemetry(self, device: str, record: dict[str, float | int | str]) -> None:
        pass

    def close(self) -> None:
        if self.owned:
            self.stream.close()


class Spooled:
    """Alerts (QoS 1) and telemetry (QoS 0) into the spool, then a nudge to the forwarder."""

    def __init__(
        self, spool: Spool, topics: str, notify: Callable[[], None], telemetry: bool
    ) -> None:
        self.spool, self.topics, self.notify = spool, topics, notify
        self.with_telemetry = telemetry

    def send(self, alert: Alert) -> None:
        payload = alert.model_dump_json().encode()
        step = AlertStep(alert.device, alert.sequence, alert.state)
        self.spool.put("alert", self.topics + "alerts", payload, 1, step)
        self.notify()

    def telemetry(self, device: str, record: dict[str, float | int | str]) -> None:
        if self.with_telemetry:
            payload = json.dumps({"device": device, **record}).encode()
            self.spool.put("telemetry", self.topics + "scores", payload, 0)
            self.notify()

    def close(self) -> None:
        pass
