"""The contracts, as Telegraf writes them, kept by every sink and by the spool: a sink is started,
written batches of records, and closed; close waits for a write in progress and no write follows
it. The spool is a transactional buffer. Every component's start and stop may be called twice."""

import io
import json
import threading
from datetime import UTC, datetime

import pytest

from edgewatch.agent.alerts import Alert, ModelRef
from edgewatch.agent.feedback import FeedbackStore
from edgewatch.agent.http import StatusServer
from edgewatch.agent.metrics import Registry
from edgewatch.agent.sinks.fanout import Fanout
from edgewatch.agent.sinks.mqtt import Forwarder
from edgewatch.agent.sinks.outputs import Lines, Sink, SinkClosed, Spooled, Telemetry
from edgewatch.agent.sinks.spool import Entry, Spool
from edgewatch.agent.supervisor import thread
from tests.conftest import free_port

BATCH = 50


def alert(sequence: int) -> Alert:
    now = datetime.fromtimestamp(1_700_000_000 + sequence, UTC)
    return Alert(
        alert_id=f"a{sequence}",
        state="raised",
        severity="warning",
        site="s",
        device="d",
        sequence=sequence,
        ts=now,
        started_at=now,
        score=3.0,
        threshold=2.0,
        model=ModelRef(name="m", version="1", sha256="0" * 64),
    )


def lines_of(text: str) -> list[int]:
    return [json.loads(line)["sequence"] for line in text.splitlines()]


def stdout_lines(tmp_path):  # type: ignore[no-untyped-def]
    stream = io.StringIO()
    return Lines(stream), lambda: lines_of(stream.getvalue())


def jsonl_file(tmp_path):  # type: ignore[no-untyped-def]
    path = tmp_path / "out" / "alerts.jsonl"
    return Lines.file(path), lambda: lines_of(path.read_text()) if path.exists() else []


def spooled(tmp_path):  # type: ignore[no-untyped-def]
    spool = Spool(tmp_path / "spool.sqlite", 1_000_000, 1 << 30)

    def read() -> list[int]:
        spool.reject()
        taken = spool.begin(1_000_000)
        return [json.loads(m.payload)["sequence"] for m in taken if m.kind == "alert"]

    return Spooled(spool, "t/", lambda: None, telemetry=True), read


def fanned_out(tmp_path):  # type: ignore[no-untyped-def]
    first, read = stdout_lines(tmp_path)
    second, read_second = jsonl_file(tmp_path)
    return Fanout([first, second]), lambda: read() if read() == read_second() else None


SINKS = [stdout_lines, jsonl_file, spooled, fanned_out]


@pytest.fixture(params=SINKS, ids=lambda make: make.__name__)
def sink(request, tmp_path):  # type: ignore[no-untyped-def]
    return request.param(tmp_path)


def test_a_sink_writes_batches_whole_and_in_order(sink):
    out, read = sink
    out.start()
    out.write([alert(1), Telemetry("d", 1.0, 0.5), alert(2)])
    out.write([alert(3)])
    out.close()
    assert read() == [1, 2, 3]


def test_start_and_close_may_be_called_twice(sink):
    out, read = sink
    out.start()
    out.start()
    out.write([alert(1)])
    out.close()
    out.close()
    assert read() == [1]


def test_a_write_after_close_is_refused_and_writes_nothing(sink):
    out, read = sink
    out.start()
    out.close()
    with pytest.raises(SinkClosed, match="written to after close"):
        out.write([alert(1)])
    assert read() == []


def test_close_waits_for_the_write_in_progress(sink):
    out, read = sink
    out.start()
    written, ended = threading.Event(), []

    def writer() -> None:
        sequence = 0
        try:
            while True:
                out.write([alert(sequence + i) for i in range(1, BATCH + 1)])
                sequence += BATCH
                written.set()
        except Exception as e:
            ended.append(e)

    running = threading.Thread(target=writer)
    running.start()
    assert written.wait(10)
    out.close()
    running.join(10)
    assert [type(e) for e in ended] == [SinkClosed]
    got = read()
    assert got and len(got) % BATCH == 0 and got == list(range(1, len(got) + 1))


def test_the_sink_base_class_is_the_only_way_in():
    assert all(issubclass(kind, Sink) for kind in (Lines, Spooled, Fanout))


def entries(first: int, count: int) -> list[Entry]:
    return [Entry("alert", "t", b'{"n": %d}' % i, 1) for i in range(first, first + count)]


def numbers(messages):  # type: ignore[no-untyped-def]
    return [json.loads(m.payload)["n"] for m in messages]


def test_the_spool_is_a_transactional_buffer(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite", 1000, 1 << 20)
    assert spool.add(entries(0, 5)) == [1, 2, 3, 4, 5]
    batch = spool.begin(3)
    assert numbers(batch) == [0, 1, 2] and numbers(spool.begin(10)) == [3, 4]
    spool.accept(batch[:2])
    spool.reject(batch[2:])
    assert numbers(spool.begin(10)) == [2, 3, 4]
    assert (spool.added, spool.accepted, spool.rows) == (5, 2, 3)
    spool.close()
    spool.close()


def test_a_batch_too_large_for_the_spool_is_dropped_entry_by_entry(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite", 1000, 1 << 16)
    big = Entry("telemetry", "t", b"x" * 70_000, 0)
    assert spool.add([entries(0, 1)[0], big, entries(1, 1)[0]]) == [1, -1, 2]
    assert spool.dropped == {"telemetry": 1} and spool.added == 2


def test_messages_added_while_batches_are_taken_are_all_delivered(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite", 100_000, 1 << 30)
    done = threading.Event()

    def writer() -> None:
        for first in range(0, 2000, 20):
            spool.add(entries(first, 20))
        done.set()

    threading.Thread(target=writer).start()
    delivered: list[int] = []
    while not (done.is_set() and spool.rows == 0):
        batch = spool.begin(7)
        delivered += numbers(batch[::2])
        spool.accept(batch[::2])
        spool.reject(batch[1::2])
    assert sorted(delivered) == list(range(2000)) and spool.accepted == 2000


class Spawned:
    """A ``spawn`` that counts the threads a component starts."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, name, target, stop):  # type: ignore[no-untyped-def]
        self.names.append(name)
        return thread(name, target, stop)


def test_the_forwarder_starts_and_stops_once_however_often_asked(tmp_path):
    from edgewatch.agent.config import Broker

    spawned = Spawned()
    spool = Spool(tmp_path / "spool.sqlite", 1000, 1 << 20)
    broker = Broker(host="127.0.0.1", port=free_port(), reconnect_max_s=0.5)
    forwarder = Forwarder(broker, "c", "t/status", spool, spawn=spawned)
    forwarder.start()
    forwarder.start()
    forwarder.stop(0.1)
    forwarder.stop(0.1)
    forwarder.start()
    assert spawned.names == ["forwarder"]


def test_the_status_server_starts_and_stops_once_however_often_asked():
    spawned = Spawned()
    server = StatusServer("127.0.0.1", free_port(), Registry(), lambda: (True, {}), spawned)
    server.start()
    server.start()
    server.stop()
    server.stop()
    server.start()
    assert spawned.names == ["http"]


def test_stores_close_twice(tmp_path):
    feedback = FeedbackStore(tmp_path / "feedback.sqlite")
    feedback.close()
    feedback.close()
