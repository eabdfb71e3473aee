"""The store-and-forward spool: messages wait in SQLite (WAL) until the broker has them.

An alert is committed here before anyone tries to publish it, and deleted only when the broker
acknowledges it, so a lost connection, a crash or ``kill -9`` loses nothing the pipeline handed
over. Commits are synchronous (``synchronous=FULL``) so a power cut does not either.

The spool is bounded in rows and bytes. When a new message does not fit, the oldest telemetry
goes first, and only when no telemetry is left the oldest alerts; every drop is counted by kind.
Messages that were already waiting when a connection came up are *backlog*: they are delivered
late, and an alert among them is marked ``historical``.
"""

import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["alert", "telemetry"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('alert', 'telemetry')),
    topic TEXT NOT NULL,
    qos INTEGER NOT NULL,
    payload BLOB NOT NULL,
    backlog INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sequences (device TEXT PRIMARY KEY, last INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Message:
    id: int
    kind: Kind
    topic: str
    qos: int
    payload: bytes
    backlog: bool


class Spool:
    def __init__(self, path: Path, max_rows: int, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.max_rows, self.max_bytes = path, max_rows, max_bytes
        self.dropped: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        rows, size = self._db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbox"
        ).fetchone()
        self.rows, self.bytes = int(rows), int(size)

    def put(
        self,
        kind: Kind,
        topic: str,
        payload: bytes,
        qos: int,
        sequence: tuple[str, int] | None = None,
    ) -> int:
        """Store a message (and a device's latest alert sequence number); returns its id."""
        with self._lock:
            if len(payload) > self.max_bytes:
                self.dropped[kind] += 1
                return -1
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._make_room(len(payload))
                cursor = self._db.execute(
                    "INSERT INTO outbox (kind, topic, qos, payload) VALUES (?, ?, ?, ?)",
                    (kind, topic, qos, payload),
                )
                if sequence is not None:
                    self._db.execute(
                        "INSERT INTO sequences VALUES (?, ?) "
                        "ON CONFLICT(device) DO UPDATE SET last = excluded.last",
                        sequence,
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self.rows += 1
            self.bytes += len(payload)
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def _make_room(self, size: int) -> None:
        for kind in ("telemetry", "alert"):
            while self.rows + 1 > self.max_rows or self.bytes + size > self.max_bytes:
                oldest = self._db.execute(
                    "SELECT id, length(payload) FROM outbox WHERE kind = ? ORDER BY id LIMIT 1",
                    (kind,),
                ).fetchone()
                if oldest is None:
                    break
                self._db.execute("DELETE FROM outbox WHERE id = ?", (oldest[0],))
                self.rows -= 1
                self.bytes -= oldest[1]
                self.dropped[kind] += 1

    def pending(self, after: int = 0, limit: int = 100) -> list[Message]:
        """Messages after id ``after``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, topic, qos, payload, backlog FROM outbox WHERE id > ? "
                "ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [Message(i, k, t, q, bytes(p), bool(b)) for i, k, t, q, p, b in rows]

    def ack(self, id: int) -> None:
        """The broker has message ``id``: forget it."""
        with self._lock:
            row = self._db.execute(
                "DELETE FROM outbox WHERE id = ? RETURNING length(payload)", (id,)
            )
            deleted = row.fetchone()
            if deleted is not None:
                self.rows -= 1
                self.bytes -= deleted[0]

    def mark_backlog(self) -> None:
        """Everything waiting now will be delivered late."""
        with self._lock:
            self._db.execute("UPDATE outbox SET backlog = 1 WHERE backlog = 0")

    def sequences(self) -> dict[str, int]:
        """The last alert sequence number of every device, to carry on from after a restart."""
        with self._lock:
            return dict(self._db.execute("SELECT device, last FROM sequences").fetchall())

    def close(self) -> None:
        with self._lock:
            self._db.close()
