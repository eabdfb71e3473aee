"""Operator labels from the network are bounded: by rate, by inbox, one label kept per alert."""

import json
import sqlite3
import threading
from datetime import UTC, datetime

import numpy as np

from edgewatch.agent.alerts import Alert
from edgewatch.agent.feedback import BURST, FeedbackStore
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


def test_a_flood_of_labels_is_cut_to_the_rate_and_one_label_per_alert_is_kept(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    store.record(raised("a1"), ("x",), np.ones(1))
    for i in range(5000):
        label = "normal" if i % 2 else "anomaly"
        store.offer(json.dumps({"alert_id": "a1", "label": label, "note": str(i)}).encode())
    assert BURST <= 5000 - store.dropped <= BURST + 10
    stop = threading.Event()
    worker = threading.Thread(target=store.run, args=(stop,))
    worker.start()
    wait_for(lambda: store.accepted == 5000 - store.dropped, what="the queued labels stored")
    stop.set()
    worker.join()
    with sqlite3.connect(tmp_path / "feedback.sqlite") as db:
        rows = db.execute("SELECT label, note FROM labels WHERE alert_id = 'a1'").fetchall()
    # The latest label stays: one of the last taken, after the first burst.
    assert len(rows) == 1 and int(rows[0][1]) >= BURST - 1
    assert store.export(tmp_path / "labels.csv") == 1
