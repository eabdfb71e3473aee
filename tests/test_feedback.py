"""Operator labels from the network are bounded: by rate, by inbox, one label kept per alert."""

import json
import sqlite3
import threading
from datetime import UTC, datetime

import numpy as np

from edgewatch.agent.alerts import Alert
from edgewatch.agent.clock import ManualClock
from edgewatch.agent.feedback import BURST, RATE, FeedbackStore
from tests.conftest import wait_for


def raised(alert_id: str) -> Alert:
    now = datetime.now(UTC)
    return Alert.model_validate(
        {
            "alert_id": alert_id, "state": "raised", "severity": "warning", "site": "s",
            "device": "fan", "sequence": 1, "ts": now, "started_at": now, "score": 3.0,
            "threshold": 2.0, "model": {"name": "fan", "version": "1", "sha256": "0" * 64},
        }
    )  # fmt: skip


def label(alert_id: str, value: str, note: str = "") -> bytes:
    return json.dumps({"alert_id": alert_id, "label": value, "note": note}).encode()


def test_a_flood_of_labels_is_cut_to_the_rate_and_one_label_per_alert_is_kept(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite", ManualClock())
    store.record(raised("a1"), ("x",), np.ones((1, 1)))
    for i in range(5000):
        store.offer(label("a1", "normal" if i % 2 else "anomaly", str(i)))
    # The clock stood still: the burst passed, nothing more.
    assert store.dropped == 5000 - BURST
    while store.poll():
        pass
    assert store.accepted == BURST
    with sqlite3.connect(tmp_path / "feedback.sqlite") as db:
        rows = db.execute("SELECT label, note FROM labels WHERE alert_id = 'a1'").fetchall()
    assert rows == [("normal", str(BURST - 1))]
    assert store.export(tmp_path / "labels.csv") == (1, 1)


def test_the_rate_refills_with_time(tmp_path):
    clock = ManualClock()
    store = FeedbackStore(tmp_path / "feedback.sqlite", clock)
    for _ in range(BURST):
        store.offer(label("a1", "normal"))
    store.offer(label("a1", "normal"))
    assert store.dropped == 1
    clock.sleep(1.0)
    for _ in range(int(RATE) + 5):
        store.offer(label("a1", "normal"))
    assert store.dropped == 1 + 5


def test_a_label_for_an_unknown_alert_or_a_bad_message_is_refused_and_counted(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite", ManualClock())
    store.offer(label("nope", "normal"))
    store.offer(b'{"alert_id": "a1", "label": "maybe"}')
    assert store.poll() and store.poll() and not store.poll()
    assert (store.accepted, store.rejected) == (0, 2)


def test_the_worker_stores_what_was_offered(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    store.record(raised("a1"), ("x",), np.ones((1, 1)))
    store.offer(label("a1", "anomaly"))
    stop = threading.Event()
    worker = threading.Thread(target=store.run, args=(stop,))
    worker.start()
    wait_for(lambda: store.accepted == 1, what="the label stored")
    stop.set()
    worker.join()


def test_what_is_kept_stays_bounded_and_labelled_alerts_stay_longest(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite", ManualClock(), max_alerts=5, max_labels=3)
    for i in range(300):
        store.record(raised(f"a{i}"), ("x",), np.full((2, 1), float(i)))
        if i in (10, 20, 30, 40):
            store.receive(label(f"a{i}", "normal"))
    alerts = {a for (a,) in store._db.execute("SELECT alert_id FROM alerts")}
    assert alerts == {"a20", "a30", "a40", *(f"a{i}" for i in range(295, 300))}
    assert store._db.execute("SELECT count(*) FROM labels").fetchone() == (3,)
    assert store.export(tmp_path / "labels.csv") == (3, 6)
