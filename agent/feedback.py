"""Operator feedback: labels for alerts, kept with the features that raised them, for retraining.

Every raised alert's feature row is recorded here; a message ``{"alert_id", "label", "note"}`` on
the feedback topic labels it. ``export`` writes one CSV row per labelled alert: its id, device,
time, label, note and feature values, ready for ``edgewatch train`` to learn from.

Messages come from the network, so they are bounded: ``offer`` takes them on the network thread
at most ``RATE`` a second (in bursts of up to ``BURST``) into an inbox of ``INBOX``, dropping and
counting the rest, and ``run`` writes them on a thread of its own. An alert keeps its latest
label only.
"""

import csv
import json
import logging
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, ValidationError

from edgewatch.agent.alerts import Alert
from edgewatch.agent.clock import Clock, SystemClock
from edgewatch.agent.metrics import Registry
from edgewatch.agent.schema import Frozen, problems

Label = Literal["anomaly", "normal", "unsure"]
RATE, BURST, INBOX = 20.0, 100, 1000
log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    ts TEXT NOT NULL,
    model TEXT NOT NULL,
    names TEXT NOT NULL,
    features BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS labels (
    alert_id TEXT NOT NULL,
    label TEXT NOT NULL,
    note TEXT NOT NULL,
    received_at REAL NOT NULL
);
"""


class Feedback(Frozen):
    alert_id: Annotated[str, Field(min_length=1, max_length=64)]
    label: Label
    note: Annotated[str, Field(max_length=2000)] = ""


class FeedbackError(ValueError):
    """A feedback message that was refused, and why."""


class FeedbackStore:
    def __init__(self, path: Path, clock: Clock | None = None) -> None:
        """``clock`` paces the rate limit (default: the system's)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self.accepted = 0
        self.rejected = 0
        self.dropped = 0
        self._inbox: queue.Queue[bytes] = queue.Queue(INBOX)
        self._clock = clock or SystemClock()
        self._tokens, self._refilled = float(BURST), self._clock.monotonic()

    def offer(self, payload: bytes) -> None:
        """Queue a feedback message from the network; dropped and counted beyond the rate or
        when the inbox is full."""
        now = self._clock.monotonic()
        self._tokens = min(BURST, self._tokens + (now - self._refilled) * RATE)
        self._refilled = now
        if self._tokens < 1:
            self.dropped += 1
            return
        self._tokens -= 1
        try:
            self._inbox.put_nowait(payload)
        except queue.Full:
            self.dropped += 1

    def export_metrics(self, registry: Registry) -> None:
        registry.collect(
            "counter",
            "feedback_total",
            "Feedback messages, by result",
            ("result",),
            lambda: {
                ("ok",): self.accepted,
                ("refused",): self.rejected,
                ("dropped",): self.dropped,
            },
        )

    def run(self, stop: threading.Event) -> None:
        """Store what ``offer`` queued until ``stop`` is set."""
        while not stop.is_set():
            self.poll(0.2)

    def poll(self, timeout_s: float = 0.0) -> bool:
        """Store the next queued message, waiting up to ``timeout_s`` for one; False when none
        came."""
        try:
            payload = self._inbox.get(timeout=timeout_s)
        except queue.Empty:
            return False
        try:
            feedback = self.receive(payload)
        except FeedbackError as e:
            log.warning("feedback refused: %s", e)
            return True
        log.info("feedback: %s is %s", feedback.alert_id, feedback.label)
        return True

    def record(self, alert: Alert, names: tuple[str, ...], features: np.ndarray) -> None:
        """Keep a raised alert's feature row, to label later."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO alerts VALUES (?, ?, ?, ?, ?, ?)",
                (
                    alert.alert_id,
                    alert.device,
                    alert.ts.isoformat(),
                    f"{alert.model.name}:{alert.model.version}",
                    json.dumps(names),
                    features.astype("<f8").tobytes(),
                ),
            )

    def receive(self, payload: bytes) -> Feedback:
        """Validate and store one feedback message; ``FeedbackError`` says what is wrong."""
        try:
            feedback = Feedback.model_validate_json(payload)
        except ValidationError as e:
            self.rejected += 1
            raise FeedbackError("; ".join(problems(e, root="message"))) from None
        with self._lock:
            known = self._db.execute(
                "SELECT 1 FROM alerts WHERE alert_id = ?", (feedback.alert_id,)
            ).fetchone()
            if known is None:
                self.rejected += 1
                raise FeedbackError(f"alert_id {feedback.alert_id}: no such alert here")
            try:
                self._db.execute("BEGIN")
                self._db.execute("DELETE FROM labels WHERE alert_id = ?", (feedback.alert_id,))
                self._db.execute(
                    "INSERT INTO labels VALUES (?, ?, ?, ?)",
                    (feedback.alert_id, feedback.label, feedback.note, time.time()),
                )
                self._db.execute("COMMIT")
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        self.accepted += 1
        return feedback

    def export(self, out: Path) -> int:
        """Write the labelled alerts to CSV (the latest label of each); returns the row count."""
        with self._lock:
            rows = self._db.execute(
                "SELECT a.alert_id, a.device, a.ts, a.model, l.label, l.note, a.names, "
                "a.features FROM alerts a JOIN labels l ON l.alert_id = a.alert_id "
                "WHERE l.rowid = (SELECT max(rowid) FROM labels WHERE alert_id = a.alert_id) "
                "ORDER BY a.ts"
            ).fetchall()
        names = list(dict.fromkeys(n for row in rows for n in json.loads(row[6])))
        with out.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["alert_id", "device", "ts", "model", "label", "note", *names])
            for alert_id, device, ts, model, label, note, row_names, blob in rows:
                values = dict(zip(json.loads(row_names), np.frombuffer(blob, "<f8"), strict=True))
                writer.writerow(
                    [alert_id, device, ts, model, label, note, *(values.get(n, "") for n in names)]
                )
        return len(rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()
