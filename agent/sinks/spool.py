"""The store-and-forward spool: messages wait in SQLite (WAL) until the broker has them.

An alert is committed here before anyone tries to publish it, and deleted only when the broker
acknowledges it, so a lost connection, a crash or ``kill -9`` loses nothing the pipeline handed
over. Commits are synchronous (``synchronous=FULL``) so a power cut does not either.

It is a transactional buffer. Writers ``add`` a batch in one transaction. The forwarder
``begin``s a batch of what is waiting, then ``accept``s each message the broker acknowledged and
``reject``s what it could not send: given back, it comes in a later batch (at least once). The
spool counts what it took, delivered, dropped and could not store.

The spool is bounded in rows and bytes. When a new message does not fit, the oldest telemetry
goes first, and only when no telemetry is left the oldest alerts; every drop is counted by kind.
Messages that were already waiting when a connection came up are *backlog* (``last_id`` then):
they are delivered late, and an alert among them is marked ``historical``. With each alert the
spool keeps its device's sequence number and, while it is raised, the alert itself
(``open_alerts``), so that a restart can close what was open.

A full disk does not stop it. A message that cannot be stored is dropped and counted
(``unstored``), its transaction rolled back whole. What the spool holds is still delivered: the
spool keeps a reserve file of ``RESERVE`` bytes beside it, taken at start when there is room,
and the first acknowledgement that finds the disk full gives it up and folds the WAL into the
database, so that delivered messages can be deleted, which frees room again. An
acknowledgement that cannot be written all the same leaves its message to be delivered again
(at least once).
"""

import logging
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from edgewatch.agent.metrics import Registry

Kind = Literal["alert", "telemetry"]


class AlertStep(NamedTuple):
    """An alert's place in its device's life: what the spool keeps beside its payload."""

    device: str
    sequence: int
    state: str


class Entry(NamedTuple):
    """A message to store: with an alert, its step."""

    kind: Kind
    topic: str
    payload: bytes
    qos: int
    alert: AlertStep | None = None


log = logging.getLogger(__name__)
WAL_PAGES = 64
RESERVE = 1 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('alert', 'telemetry')),
    topic TEXT NOT NULL,
    qos INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS sequences (device TEXT PRIMARY KEY, last INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS open_alerts (device TEXT PRIMARY KEY, payload BLOB NOT NULL);
"""


@dataclass(frozen=True)
class Message:
    id: int
    kind: Kind
    topic: str
    qos: int
    payload: bytes


class Spool:
    def __init__(self, path: Path, max_rows: int, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.max_rows, self.max_bytes = path, max_rows, max_bytes
        self.dropped: Counter[str] = Counter()
        self.unstored: Counter[str] = Counter()
        self.added = self.accepted = 0
        self._taken = 0
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        # A WAL copied into the database every 64 pages (256 KiB) stays small and is reused
        # from its start, so on a disk that fills up later, deletes and inserts find room in it.
        self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
        self._db.executescript(_SCHEMA)
        rows, size = self._db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbox"
        ).fetchone()
        self.rows, self.bytes = int(rows), int(size)
        self._reserve = path.with_name(path.name + ".reserve")
        try:
            with self._reserve.open("wb") as reserve:
                os.posix_fallocate(reserve.fileno(), 0, RESERVE)
        except OSError as e:
            log.warning("spool: no room for a reserve of %d bytes: %s", RESERVE, e)
            self._reserve.unlink(missing_ok=True)

    def add(self, entries: Sequence[Entry]) -> list[int]:
        """Store a batch of messages in one transaction (with an alert, its device's sequence
        number and whether it is still open); their ids, -1 for each dropped: too large, or
        the whole batch when the disk refused it."""
        with self._lock:
            fits = [e for e in entries if len(e.payload) <= self.max_bytes]
            self.dropped.update(e.kind for e in entries if len(e.payload) > self.max_bytes)
            stored = self._add(fits) if fits else []
            if stored is None:
                self.unstored.update(e.kind for e in fits)
                return [-1] * len(entries)
            self.added += len(stored)
            ids = iter(stored)
            return [next(ids) if len(e.payload) <= self.max_bytes else -1 for e in entries]

    def put(
        self, kind: Kind, topic: str, payload: bytes, qos: int, alert: AlertStep | None = None
    ) -> int:
        """Store one message; its id, or -1 when it was dropped."""
        return self.add([Entry(kind, topic, payload, qos, alert)])[0]

    def _add(self, entries: Sequence[Entry]) -> list[int] | None:
        rows, space, made, ids = self.rows, self.bytes, [], []
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for kind, topic, payload, qos, alert in entries:
                freed = self._make_room(len(payload), rows, space)
                made += freed
                rows += 1 - len(freed)
                space += len(payload) - sum(size for _, size in freed)
                cursor = self._db.execute(
                    "INSERT INTO outbox (kind, topic, qos, payload) VALUES (?, ?, ?, ?)",
                    (kind, topic, qos, payload),
                )
                assert cursor.lastrowid is not None
                ids.append(cursor.lastrowid)
                if alert is not None:
                    self._keep(alert, payload)
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            # SQLite may have rolled back already (a full disk does that).
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            log.error("spool: cannot store %d messages: %s", len(entries), e)
            return None
        self.dropped.update(kind for kind, _ in made)
        self.rows, self.bytes = rows, space
        return ids

    def _keep(self, alert: AlertStep, payload: bytes) -> None:
        self._db.execute(
            "INSERT INTO sequences VALUES (?, ?) "
            "ON CONFLICT(device) DO UPDATE SET last = excluded.last",
            (alert.device, alert.sequence),
        )
        if alert.state == "raised":
            self._db.execute(
                "INSERT OR REPLACE INTO open_alerts VALUES (?, ?)", (alert.device, payload)
            )
        else:
            self._db.execute("DELETE FROM open_alerts WHERE device = ?", (alert.device,))

    def _make_space(self) -> bool:
        """Give up the reserve and fold the WAL into the database; False when there was no
        reserve left to give."""
        if not self._reserve.exists():
            return False
        log.error("spool: the disk is full; giving up the reserve to deliver what is held")
        self._reserve.unlink()
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as e:
            log.error("spool: cannot fold the WAL into the database: %s", e)
        return True

    def _make_room(self, size: int, rows: int, space: int) -> list[tuple[str, int]]:
        """Delete the oldest messages until one of ``size`` bytes fits beside ``rows`` messages
        of ``space`` bytes; the kind and size of each, counted once the transaction commits."""
        made = []
        for kind in ("telemetry", "alert"):
            while rows + 1 > self.max_rows or space + size > self.max_bytes:
                oldest = self._db.execute(
                    "SELECT id, length(payload) FROM outbox WHERE kind = ? ORDER BY id LIMIT 1",
                    (kind,),
                ).fetchone()
                if oldest is None:
                    break
                self._db.execute("DELETE FROM outbox WHERE id = ?", (oldest[0],))
                rows -= 1
                space -= oldest[1]
                made.append((kind, int(oldest[1])))
        return made

    def begin(self, limit: int) -> list[Message]:
        """Up to ``limit`` messages that no open batch has taken, oldest first. They stay
        taken until accepted, or given back with ``reject``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, topic, qos, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (self._taken, limit),
            ).fetchall()
            if rows:
                self._taken = rows[-1][0]
        return [Message(i, k, t, q, bytes(p)) for i, k, t, q, p in rows]

    def accept(self, messages: Sequence[Message]) -> None:
        """The broker has ``messages``: forget them (if the disk lets us; a message it does not
        is delivered again)."""
        with self._lock:
            for message in messages:
                deleted = self._ack(message.id)
                if deleted is None and self._make_space():
                    deleted = self._ack(message.id)
                if deleted:
                    self.rows -= 1
                    self.bytes -= deleted
                    self.accepted += 1

    def reject(self, messages: Sequence[Message] = ()) -> None:
        """Give ``messages`` back (by default, every message taken and not accepted): the next
        ``begin`` takes them again."""
        with self._lock:
            self._taken = min(m.id for m in messages) - 1 if messages else 0

    def _ack(self, id: int) -> int | None:
        """The deleted message's size (0 for none), or None when the disk refused."""
        try:
            row = self._db.execute(
                "DELETE FROM outbox WHERE id = ? RETURNING length(payload)", (id,)
            ).fetchone()
        except sqlite3.Error as e:
            log.error("spool: cannot forget message %d: %s", id, e)
            return None
        return int(row[0]) if row is not None else 0

    def last_id(self) -> int:
        """The newest message's id (0 for none): what is waiting now is backlog."""
        with self._lock:
            return int(self._db.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0])

    def open_alerts(self) -> list[bytes]:
        """The alerts raised and not yet cleared when the spool was last written, by device."""
        with self._lock:
            rows = self._db.execute("SELECT payload FROM open_alerts ORDER BY device").fetchall()
        return [bytes(payload) for (payload,) in rows]

    def sequences(self) -> dict[str, int]:
        """The last alert sequence number of every device, to carry on from after a restart."""
        with self._lock:
            return dict(self._db.execute("SELECT device, last FROM sequences").fetchall())

    def export_metrics(self, registry: Registry) -> None:
        registry.collect(
            "gauge", "spool_depth", "Messages waiting in the spool", (), lambda: {(): self.rows}
        )
        registry.collect(
            "gauge",
            "spool_bytes",
            "Payload bytes waiting in the spool",
            (),
            lambda: {(): self.bytes},
        )
        registry.collect(
            "counter",
            "spool_messages_total",
            "Messages into the spool, and out of it delivered",
            ("result",),
            lambda: {("added",): self.added, ("delivered",): self.accepted},
        )
        registry.collect(
            "counter",
            "spool_dropped_total",
            "Messages dropped from a full spool",
            ("kind",),
            lambda: {(k,): n for k, n in self.dropped.items()},
        )
        registry.collect(
            "counter",
            "spool_unstored_total",
            "Messages the disk refused to store",
            ("kind",),
            lambda: {(k,): n for k, n in self.unstored.items()},
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()
