"""The spool and the forwarder against a real Mosquitto: order, PUBACK, outages, TLS, status."""

import json

import pytest

from agent.config import Broker, Tls
from agent.sinks.mqtt import Forwarder
from agent.sinks.spool import Spool
from tests.conftest import Subscriber, wait_for

ROOT = "edgewatch/site/dev/"


def alert(sequence: int) -> bytes:
    return json.dumps({"sequence": sequence, "historical": False}).encode()


def spooled(tmp_path, rows=1000, size=1 << 20) -> Spool:
    return Spool(tmp_path / "spool.sqlite", rows, size)


def test_the_spool_keeps_order_and_survives_a_reopen(tmp_path):
    spool = spooled(tmp_path)
    ids = [spool.put("alert", "t", alert(i), 1, ("dev", i)) for i in range(1, 4)]
    spool.ack(ids[0])
    spool.close()
    again = spooled(tmp_path)
    assert [json.loads(m.payload)["sequence"] for m in again.pending()] == [2, 3]
    assert (again.rows, again.sequences()) == (2, {"dev": 3})
    assert [m.id for m in again.pending(after=ids[1])] == [ids[2]]


def test_a_full_spool_drops_telemetry_first_then_the_oldest_alerts(tmp_path):
    spool = spooled(tmp_path, rows=10)
    for i in range(4):
        spool.put("telemetry", "t", b"score %d" % i, 0)
    for i in range(9):
        spool.put("alert", "t", alert(i), 1)
    assert spool.dropped == {"telemetry": 3}
    assert [m.kind for m in spool.pending()] == ["telemetry"] + ["alert"] * 9
    spool.put("alert", "t", alert(9), 1)
    spool.put("alert", "t", alert(10), 1)
    assert spool.dropped == {"telemetry": 4, "alert": 1}
    assert [json.loads(m.payload)["sequence"] for m in spool.pending()] == list(range(1, 11))


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
