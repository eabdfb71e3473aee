"""The spool and the forwarder against a real Mosquitto: order, PUBACK, outages, TLS, status."""

import json
import subprocess
import sys

import pytest

from edgewatch.agent.config import Broker, Tls
from edgewatch.agent.sinks.mqtt import Forwarder
from edgewatch.agent.sinks.spool import AlertStep, Entry, Spool
from tests.conftest import Subscriber, wait_for

ROOT = "edgewatch/site/dev/"


def alert(sequence: int) -> bytes:
    return json.dumps({"sequence": sequence, "historical": False}).encode()


def spooled(tmp_path, rows=1000, size=1 << 20) -> Spool:
    return Spool(tmp_path / "spool.sqlite", rows, size)


def sequences(messages):
    return [json.loads(m.payload)["sequence"] for m in messages]


def test_the_spool_keeps_order_and_survives_a_reopen(tmp_path):
    spool = spooled(tmp_path)
    entries = [Entry("alert", "t", alert(i), 1, AlertStep("dev", i, "raised")) for i in (1, 2, 3)]
    spool.add(entries)
    spool.accept(spool.begin(1))
    spool.close()
    again = spooled(tmp_path)
    assert sequences(again.begin(100)) == [2, 3]
    assert (again.rows, again.sequences()) == (2, {"dev": 3})


def test_a_batch_is_taken_until_accepted_or_given_back(tmp_path):
    spool = spooled(tmp_path)
    spool.add([Entry("alert", "t", alert(i), 1) for i in range(1, 6)])
    first = spool.begin(2)
    assert sequences(first) == [1, 2] and sequences(spool.begin(2)) == [3, 4]
    spool.accept(first[:1])
    spool.reject(first[1:])
    assert sequences(spool.begin(10)) == [2, 3, 4, 5]
    spool.reject()
    assert sequences(spool.begin(10)) == [2, 3, 4, 5]
    assert (spool.added, spool.accepted, spool.rows) == (5, 1, 4)


def test_a_full_spool_drops_telemetry_first_then_the_oldest_alerts(tmp_path):
    spool = spooled(tmp_path, rows=10)
    for i in range(4):
        spool.put("telemetry", "t", b"score %d" % i, 0)
    for i in range(9):
        spool.put("alert", "t", alert(i), 1)
    assert spool.dropped == {"telemetry": 3}
    assert [m.kind for m in spool.begin(100)] == ["telemetry"] + ["alert"] * 9
    spool.put("alert", "t", alert(9), 1)
    spool.put("alert", "t", alert(10), 1)
    assert spool.dropped == {"telemetry": 4, "alert": 1}
    spool.reject()
    assert sequences(spool.begin(100)) == list(range(1, 11))


def test_the_spool_is_bounded_in_bytes(tmp_path):
    spool = spooled(tmp_path, size=1 << 16)
    for _ in range(5):
        spool.put("alert", "t", b"x" * 20_000, 1)
    assert spool.bytes <= 1 << 16 and spool.rows == 3 and spool.dropped == {"alert": 2}
    assert spool.put("alert", "t", b"x" * 70_000, 1) == -1 and spool.dropped["alert"] == 3


def forwarder(port, spool, tls=None, **kwargs) -> Forwarder:
    broker = Broker(
        host="localhost" if tls else "127.0.0.1", port=port, tls=tls, reconnect_max_s=0.5
    )
    return Forwarder(broker, "agent-1", ROOT + "status", spool, **kwargs)


def test_alerts_arrive_in_order_and_leave_the_spool_on_puback(broker, tmp_path):
    spool = spooled(tmp_path)
    subscriber = Subscriber(broker.port)
    delivered = []
    link = forwarder(broker.port, spool, delivered=lambda m, at: delivered.append(m.id))
    link.start()
    wait_for(lambda: link.connected, what="a connection")
    for i in range(1, 51):
        spool.put("alert", ROOT + "alerts", alert(i), 1)
        link.notify()
    wait_for(lambda: len(subscriber.payloads("alerts")) == 50, what="50 alerts")
    assert [a["sequence"] for a in subscriber.payloads("alerts")] == list(range(1, 51))
    assert not any(a["historical"] for a in subscriber.payloads("alerts"))
    wait_for(lambda: spool.rows == 0, what="an empty spool")
    assert len(delivered) == 50
    assert subscriber.payloads("status") == ["online"]
    link.stop()
    wait_for(lambda: subscriber.payloads("status")[-1] == "offline", what="offline")
    assert [m.retain for m in subscriber.messages if m.topic.endswith("status")] == [0, 0]
    late = Subscriber(broker.port)
    wait_for(lambda: late.payloads("status") == ["offline"], what="the retained status")
    assert late.messages[0].retain


def test_a_broker_outage_loses_nothing_and_replays_in_order_as_historical(broker, tmp_path):
    spool = spooled(tmp_path)
    subscriber = Subscriber(broker.port, ROOT + "alerts")
    link = forwarder(broker.port, spool)
    link.start()
    wait_for(lambda: link.connected, what="a connection")
    for i in range(1, 11):
        spool.put("alert", ROOT + "alerts", alert(i), 1)
        link.notify()
    wait_for(lambda: spool.rows == 0, what="the first alerts delivered")
    broker.stop()
    wait_for(lambda: not link.connected, what="the forwarder to notice")
    for i in range(11, 31):
        spool.put("alert", ROOT + "alerts", alert(i), 1)
        link.notify()
    assert spool.rows == 20
    broker.start()
    wait_for(lambda: spool.rows == 0, timeout=20, what="the backlog delivered")
    wait_for(lambda: len({a["sequence"] for a in subscriber.payloads("alerts")}) == 30)
    first_seen = {}
    for record in subscriber.payloads("alerts"):
        first_seen.setdefault(record["sequence"], record)
    assert list(first_seen) == list(range(1, 31))
    assert all(first_seen[i]["historical"] for i in range(11, 31))
    assert not any(first_seen[i]["historical"] for i in range(1, 11))
    assert link.connects == 2
    link.stop()


def test_alerts_spooled_before_the_first_connection_are_historical(broker, tmp_path):
    spool = spooled(tmp_path)
    spool.put("alert", ROOT + "alerts", alert(1), 1)
    subscriber = Subscriber(broker.port, ROOT + "alerts")
    wait_for(lambda: subscriber.client.is_connected())
    link = forwarder(broker.port, spool)
    link.start()
    wait_for(lambda: subscriber.payloads("alerts") == [{"sequence": 1, "historical": True}])
    link.stop()


def test_tls_with_a_client_certificate(tls_broker, certificates, tmp_path):
    spool = spooled(tmp_path)
    subscriber = Subscriber(tls_broker.port, ROOT + "alerts", tls=certificates)
    tls = Tls(ca=certificates.ca, cert=certificates.client_cert, key=certificates.client_key)
    link = forwarder(tls_broker.port, spool, tls=tls)
    link.start()
    spool.put("alert", ROOT + "alerts", alert(1), 1)
    link.notify()
    wait_for(lambda: len(subscriber.payloads("alerts")) == 1, what="an alert over TLS")
    link.stop()


@pytest.mark.parametrize("with_cert", [False, True])
def test_tls_refusals_are_retried_and_reported(tls_broker, certificates, tmp_path, with_cert):
    spool = spooled(tmp_path)
    other = tmp_path / "other-ca.crt"
    other.write_bytes(certificates.server_cert.read_bytes())
    tls = (
        Tls(ca=other, cert=certificates.client_cert, key=certificates.client_key)
        if with_cert
        else Tls(ca=certificates.ca)
    )
    link = forwarder(tls_broker.port, spool, tls=tls)
    link.start()
    wait_for(lambda: link.last_error, what="an error")
    assert not link.connected and "mqtts://localhost" in link.last_error
    link.stop(flush_s=0)


FULL_DISK = """
import json, os, sys, time
from pathlib import Path
from edgewatch.agent.config import Broker
from edgewatch.agent.sinks.mqtt import Forwarder
from edgewatch.agent.sinks.spool import AlertStep, Entry, Spool

folder, port = Path(sys.argv[1]), int(sys.argv[2])
spool = Spool(folder / "spool.sqlite", 100_000, 1 << 30)
for i in range(300):  # a spool that has run a while
    spool.put("telemetry", "t", os.urandom(1000), 0)
    spool.accept(spool.begin(1))
held = [spool.put("alert", "edgewatch/site/dev/alerts", b'{"n": %d}' % i, 1) for i in range(40)]
filler = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)  # something else fills the disk
try:
    while True:
        os.write(filler, bytes(4096))
except OSError:
    os.close(filler)
# The WAL's own room takes a few more first; then the disk refuses one, counted.
while spool.put("alert", "edgewatch/site/dev/alerts", b'{"fill": "%s"}' % (b"0" * 2000), 1) > 0:
    pass
broker = Broker(host="127.0.0.1", port=port, reconnect_max_s=0.5)
link = Forwarder(broker, "agent-1", "edgewatch/site/dev/status", spool)
link.start()
deadline = time.monotonic() + 20
while spool.rows and time.monotonic() < deadline:
    time.sleep(0.05)
report = {"rows": spool.rows, "unstored": dict(spool.unstored), "connected": link.connected}
report["stored_after"] = spool.put("alert", "t", b"after", 1) > 0
link.stop(1)
print(json.dumps(report))
"""


def test_a_full_disk_refuses_new_messages_counted_and_delivers_what_the_spool_holds(
    broker, tmp_path
):
    disk = tmp_path / "disk"
    disk.mkdir()
    subscriber = Subscriber(broker.port, ROOT + "alerts")
    mount = f'mount -t tmpfs -o size=2m tmpfs {disk} && exec "$@"'
    script = [sys.executable, "-c", FULL_DISK, str(disk), str(broker.port)]
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", mount, "sh", *script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["unstored"] == {"alert": 1} and report["connected"]
    assert report["rows"] == 0 and report["stored_after"]
    wait_for(lambda: len(subscriber.payloads("alerts")) >= 40, what="the held alerts")
    numbers = [a["n"] for a in subscriber.payloads("alerts") if isinstance(a, dict) and "n" in a]
    assert numbers[:40] == list(range(40))
