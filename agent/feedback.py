"""Operator feedback: labels for alerts, kept with the features of their windows, for
retraining.

Every alert is recorded here with rows of its windows (``agent.alert_windows``); a message
``{"alert_id", "label", "note"}`` on the feedback topic labels it: ``normal`` (a false alarm),
``anomaly`` (confirmed) or ``unsure``. ``{"device", "label": "rebaseline"}`` (or an ``alert_id``
of the device) asks that the device learn its normal again. ``export`` writes one CSV row per
window of a labelled alert: the alert's id, device, time, label and note, the window's index
and its feature values, ready for ``edgewatch train --feedback``. Each accepted message also
goes to ``listener`` (the pipeline, which hands it to on-site learning) as a ``Labelled``.
What is kept is bounded: the latest ``MAX_LABELS`` labels with their alerts, the latest
``MAX_ALERTS`` alerts besides, and the windows of the latest ``WINDOWS_OF`` alerts.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, ValidationError, model_validator

from edgewatch.agent.alerts import Alert
from edgewatch.agent.clock import Clock, SystemClock
from edgewatch.agent.metrics import Registry
from edgewatch.agent.schema import Frozen, problems

Label = Literal["anomaly", "normal", "unsure", "rebaseline"]
RATE, BURST, INBOX = 20.0, 100, 1000
# What is kept is pruned every PRUNE_EVERY records.
WINDOWS_OF, MAX_ALERTS, MAX_LABELS, PRUNE_EVERY = 500, 10_000, 100_000, 100
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
CREATE TABLE IF NOT EXISTS windows (
    alert_id TEXT NOT NULL,
    features BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS windows_of_alert ON windows (alert_id);
CREATE TABLE IF NOT EXISTS labels (
    alert_id TEXT NOT NULL,
    label TEXT NOT NULL,
    note TEXT NOT NULL,
    received_at REAL NOT NULL
);
"""


class Feedback(Frozen):
    alert_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    device: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    label: Label
    note: Annotated[str, Field(max_length=2000)] = ""

    @model_validator(mode="after")
    def _names_its_subject(self) -> "Feedback":
        if self.label == "rebaseline" and (self.alert_id is None) == (self.device is None):
            raise ValueError("rebaseline names a device or an alert_id of it, one of the two")
        if self.label != "rebaseline" and (self.alert_id is None or self.device is not None):
            raise ValueError(f"a {self.label} label names the alert_id it labels, and no device")
        return self


@dataclass(frozen=True)
class Labelled:
    """An accepted message, for on-site learning: the device, the label, and the labelled
    alert's feature names and the rows of its windows (none for a rebaseline)."""

    device: str
    label: Label
    names: tuple[str, ...] = ()
    rows: np.ndarray | None = None


class FeedbackError(ValueError):
    """A feedback message that was refused, and why."""


class FeedbackStore:
    def __init__(
        self,
        path: Path,
        clock: Clock | None = None,
        max_alerts: int = MAX_ALERTS,
        max_labels: int = MAX_LABELS,
    ) -> None:
        """``clock`` paces the rate limit (default: the system's). The latest ``max_labels``
        labels are kept with their alerts, and the latest ``max_alerts`` alerts unlabelled."""
        self.max_alerts, self.max_labels = max_alerts, max_labels
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
        self.listener: Callable[[Labelled], None] | None = None
        self._records = 0

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
        log.info("feedback: %s: %s", feedback.alert_id or feedback.device, feedback.label)
        return True

    def record(self, alert: Alert, names: tuple[str, ...], rows: np.ndarray) -> None:
        """Keep rows of an open alert's windows, to label later: the first call of an alert
        keeps it, with its first row as the row that raised it."""
        blobs = [(alert.alert_id, row.astype("<f8").tobytes()) for row in rows]
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO alerts VALUES (?, ?, ?, ?, ?, ?)",
                (
                    alert.alert_id,
                    alert.device,
                    alert.ts.isoformat(),
                    f"{alert.model.name}:{alert.model.version}",
                    json.dumps(names),
                    blobs[0][1],
                ),
            )
            self._db.executemany("INSERT INTO windows VALUES (?, ?)", blobs)
            self._records += 1
            if self._records % PRUNE_EVERY == 0:
                self._prune()

    def _prune(self) -> None:
        """Keep the latest labels, the labelled alerts and the latest others, and the windows
        of the latest alerts; the caller holds the lock."""
        for statement, keep in (
            (
                "DELETE FROM labels WHERE rowid NOT IN "
                "(SELECT rowid FROM labels ORDER BY rowid DESC LIMIT ?)",
                self.max_labels,
            ),
            (
                "DELETE FROM alerts WHERE alert_id NOT IN (SELECT alert_id FROM labels) AND "
                "rowid NOT IN (SELECT rowid FROM alerts ORDER BY rowid DESC LIMIT ?)",
                self.max_alerts,
            ),
            (
                "DELETE FROM windows WHERE alert_id NOT IN "
                "(SELECT alert_id FROM alerts ORDER BY rowid DESC LIMIT ?)",
                WINDOWS_OF,
            ),
        ):
            self._db.execute(statement, (keep,))

    def thin(self, alert_id: str) -> None:
        """Drop every other window kept for ``alert_id``, the first kept."""
        with self._lock:
            kept = self._db.execute(
                "SELECT rowid FROM windows WHERE alert_id = ? ORDER BY rowid", (alert_id,)
            ).fetchall()
            self._db.executemany("DELETE FROM windows WHERE rowid = ?", kept[1::2])

    def receive(self, payload: bytes) -> Feedback:
        """Validate and store one feedback message, and tell the listener; ``FeedbackError``
        says what is wrong."""
        try:
            feedback = Feedback.model_validate_json(payload)
        except ValidationError as e:
            self.rejected += 1
            raise FeedbackError("; ".join(problems(e, root="message"))) from None
        labelled = self._store(feedback)
        self.accepted += 1
        if self.listener is not None:
            self.listener(labelled)
        return feedback

    def _store(self, feedback: Feedback) -> Labelled:
        if feedback.alert_id is None:
            assert feedback.device is not None
            return Labelled(feedback.device, feedback.label)
        with self._lock:
            known = self._db.execute(
                "SELECT device, names, features FROM alerts WHERE alert_id = ?",
                (feedback.alert_id,),
            ).fetchone()
            if known is None:
                self.rejected += 1
                raise FeedbackError(f"alert_id {feedback.alert_id}: no such alert here")
            device, names, blob = known
            if feedback.label == "rebaseline":
                return Labelled(device, feedback.label)
            rows = self._windows(feedback.alert_id, names, blob).astype(np.float32)
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
        return Labelled(device, feedback.label, tuple(json.loads(names)), rows)

    def export(self, out: Path) -> tuple[int, int]:
        """Write the windows of the labelled alerts to CSV, one row each, with the alert's
        latest label; how many alerts and windows."""
        with self._lock:
            rows = self._db.execute(
                "SELECT a.alert_id, a.device, a.ts, a.model, l.label, l.note, a.names, "
                "a.features FROM alerts a JOIN labels l ON l.alert_id = a.alert_id "
                "WHERE l.rowid = (SELECT max(rowid) FROM labels WHERE alert_id = a.alert_id) "
                "ORDER BY a.ts"
            ).fetchall()
            windows = [self._windows(row[0], row[6], row[7]) for row in rows]
        names = list(dict.fromkeys(n for row in rows for n in json.loads(row[6])))
        with out.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(
                ["alert_id", "device", "ts", "model", "label", "note", "window", *names]
            )
            for (*alert, row_names, _), mine in zip(rows, windows, strict=True):
                for index, window in enumerate(mine):
                    values = dict(zip(json.loads(row_names), window, strict=True))
                    writer.writerow([*alert, index, *(values.get(n, "") for n in names)])
        return len(rows), sum(map(len, windows))

    def _windows(self, alert_id: str, names: str, raised: bytes) -> np.ndarray:
        """The rows kept of an alert's windows (at least the row that raised it); the caller
        holds the lock."""
        blobs = self._db.execute(
            "SELECT features FROM windows WHERE alert_id = ? ORDER BY rowid", (alert_id,)
        ).fetchall()
        width = 8 * len(json.loads(names))
        kept = [b for (b,) in blobs if len(b) == width] or [raised]
        return np.stack([np.frombuffer(b, "<f8") for b in kept])

    def close(self) -> None:
        with self._lock:
            self._db.close()
