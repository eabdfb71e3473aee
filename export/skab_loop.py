"""SKAB through the gateway's own pipeline, learning each file's first rows on site, with the
loop closed: the drift watch on, and either an operator's labels for the first alerts of each
file (``feedback``) or unattended adaptation (``adapt``).

Each file's rows go through ``agent.assembly``'s pipeline one a second, as an agent would take
them. The machine learns the first ``train_rows`` rows (the first ``history`` of them only
fill the rolling statistics), with the default learning and decision settings. With
``feedback``, an operator labels each of the file's first alerts when it clears: ``anomaly`` if
the rows it covered hold a labelled anomaly, else ``normal``; the label reaches the agent as a
message on its feedback topic would, and a ``normal`` one re-fits the machine. The flags are
the rows the alerts covered, as the protocol counts them.
"""

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgewatch.agent.alerts import Alert
from edgewatch.agent.assembly import assemble
from edgewatch.agent.config import AgentConfig, validate
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.feedback import FeedbackStore
from edgewatch.agent.framing import Block
from edgewatch.agent.onsite.settings import Learning
from edgewatch.agent.sinks.outputs import Record, Sink
from edgewatch.export.datasets import SKAB_CHANNELS, Dataset


@dataclass(frozen=True)
class Loop:
    """How the loop is closed: labels for the first ``feedback`` alerts of each file, and
    unattended adaptation."""

    feedback: int = 0
    adapt: bool = False


LOOPS = {
    "on_site_agent": Loop(),
    "on_site_feedback": Loop(feedback=2),
    "on_site_adapt": Loop(adapt=True),
}


class _Alerts(Sink):
    def __init__(self) -> None:
        super().__init__()
        self.alerts: list[Alert] = []

    def _write(self, records: list[Record]) -> None:  # type: ignore[override]
        self.alerts += [r for r in records if isinstance(r, Alert)]


def loop_flags(loop: Loop, data: Dataset, train_rows: int) -> tuple[np.ndarray, int]:
    """The rows from ``train_rows`` on that the agent's alerts covered, and how many labels
    the operator gave."""
    assert data.labels is not None
    spec = FeatureSpec(kind="process", channels=SKAB_CHANNELS)
    columns = [data.channels.index(c) for c in spec.channels]
    samples = np.ascontiguousarray(data.samples[:, columns].T, dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="edgewatch-skab-") as folder:
        config = _config(loop, spec, train_rows, Path(folder))
        store = FeedbackStore(Path(folder) / "feedback.sqlite")
        sink = _Alerts()
        parts = assemble(config, keeper=store, sinks=[sink], inline_learning=True)
        pipe = parts.pipeline
        store.listener = pipe.tell
        flags = np.zeros(samples.shape[1], bool)
        opened: dict[str, int] = {}
        labels = 0
        for i in range(samples.shape[1]):
            seen = len(sink.alerts)
            pipe.process([Block("skab", float(i), 1.0, samples[:, i : i + 1], spec.channels)])
            for alert in sink.alerts[seen:]:
                start = round(alert.started_at.timestamp())
                if alert.state == "raised":
                    opened[alert.alert_id] = start
                elif alert.state == "cleared" and alert.alert_id in opened:
                    end = round(alert.ts.timestamp())
                    flags[opened.pop(alert.alert_id) : end] = True
                    if labels < loop.feedback:
                        labels += 1
                        verdict = "anomaly" if data.labels[start:end].any() else "normal"
                        message = {"alert_id": alert.alert_id, "label": verdict}
                        store.receive(json.dumps(message).encode())
        for start in opened.values():
            flags[start:] = True
        store.close()
        pipe.close()
    return flags[train_rows:], labels


def _config(loop: Loop, spec: FeatureSpec, train_rows: int, folder: Path) -> AgentConfig:
    priming = spec.history or 0
    learn = Learning(min_rows=train_rows - priming, duration_s=0)
    machine = {
        "name": "skab",
        "devices": ["skab"],
        "learn": learn.model_dump(),
        "features": spec.model_dump(),
        **({"adapt": {}} if loop.adapt else {}),
    }
    return validate(
        {
            "site": "skab",
            "device": "skab",
            "mqtt": {},
            "sources": [{"type": "mqtt", "topic": "unused/#"}],
            "sinks": [{"type": "jsonl", "path": str(folder / "alerts.jsonl")}],
            "machines": [machine],
            "learning_dir": str(folder),
        }
    )
