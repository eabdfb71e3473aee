"""Sparkplug B: the payload codec against the official schema (Eclipse Tahu's sparkplug_b.proto,
compiled here with protoc), and the edge node against a real Mosquitto, watched by a host
application that decodes its messages with that schema: birth before data, sequence numbers,
rebirth, the primary host's STATE, and the alerts across a broker outage."""

import importlib
import json
import re
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from grpc_tools import protoc
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewatch.agent.alerts import Alert
from edgewatch.agent.cli import main
from edgewatch.agent.config import Broker, ConfigError, parse_config, validate
from edgewatch.agent.framing import Block
from edgewatch.agent.sinks.outputs import Spooled, Telemetry
from edgewatch.agent.sinks.sparkplug import SparkplugForwarder
from edgewatch.agent.sinks.spool import Spool
from edgewatch.agent.sources.mqtt import MqttReader
from edgewatch.agent.sources.settings import SparkplugSource
from edgewatch.agent.sources.sparkplug import SparkplugRows
from edgewatch.agent.sparkplug import (
    BOOLEAN,
    DOUBLE,
    FLOAT,
    INT8,
    INT32,
    INT64,
    STRING,
    UINT32,
    UINT64,
    Metric,
    Payload,
    SparkplugError,
    decode,
    encode,
)
from tests.conftest import Subscriber, _broker, wait_for

SCHEMA = Path(__file__).with_name("sparkplug_b.proto")
REPO = Path(__file__).resolve().parents[1]
ROOT = "edgewatch/site/gw/"


@pytest.fixture(scope="session")
def pb(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The official schema's Python module, compiled by protoc."""
    out = tmp_path_factory.mktemp("sparkplug")
    assert protoc.main(["protoc", f"-I{SCHEMA.parent}", f"--python_out={out}", str(SCHEMA)]) == 0
    sys.path.insert(0, str(out))
    try:
        return importlib.import_module("sparkplug_b_pb2")
    finally:
        sys.path.remove(str(out))


VALUES = {
    DOUBLE: st.floats(allow_nan=False, width=64),
    FLOAT: st.floats(allow_nan=False, width=32),
    BOOLEAN: st.booleans(),
    STRING: st.text(max_size=20),
    INT8: st.integers(-128, 127),
    INT32: st.integers(-(2**31), 2**31 - 1),
    UINT32: st.integers(0, 2**32 - 1),
    INT64: st.integers(-(2**63), 2**63 - 1),
    UINT64: st.integers(0, 2**64 - 1),
}
metrics = st.one_of(
    [
        st.builds(
            Metric,
            name=st.none() | st.text(max_size=12),
            alias=st.none() | st.integers(0, 2**64 - 1),
            timestamp=st.none() | st.integers(0, 2**64 - 1),
            datatype=st.just(kind),
            value=st.none() | values,
            historical=st.booleans(),
        )
        for kind, values in VALUES.items()
    ]
)
payloads = st.builds(
    Payload,
    timestamp=st.none() | st.integers(0, 2**64 - 1),
    metrics=st.lists(metrics, max_size=4).map(tuple),
    seq=st.none() | st.integers(0, 255),
)


def official_value(metric) -> object:  # type: ignore[no-untyped-def]
    """The metric's value as the official schema holds it, as edgewatch reads it."""
    if metric.is_null or not metric.HasField("datatype"):
        return None
    field = metric.WhichOneof("value")
    if field is None:
        return None
    raw = getattr(metric, field)
    bits = {INT8: 8, INT32: 32, INT64: 64}.get(metric.datatype)
    if bits and isinstance(raw, int) and not isinstance(raw, bool) and raw >> (bits - 1) & 1:
        return (raw & ((1 << bits) - 1)) - (1 << bits)
    return raw


@settings(max_examples=300)
@given(payloads)
def test_what_edgewatch_writes_the_official_schema_reads(pb, payload: Payload) -> None:
    official = pb.Payload()
    official.ParseFromString(encode(payload))
    assert (official.timestamp if official.HasField("timestamp") else None) == payload.timestamp
    assert (official.seq if official.HasField("seq") else None) == payload.seq
    assert len(official.metrics) == len(payload.metrics)
    for theirs, ours in zip(official.metrics, payload.metrics, strict=True):
        assert (theirs.name if theirs.HasField("name") else None) == ours.name
        assert (theirs.alias if theirs.HasField("alias") else None) == ours.alias
        assert theirs.datatype == ours.datatype and theirs.is_historical == ours.historical
        expected = ours.value
        if ours.datatype == FLOAT and expected is not None:
            expected = pytest.approx(expected, rel=1e-6)
        assert official_value(theirs) == expected


@settings(max_examples=300)
@given(payloads)
def test_what_the_official_schema_writes_edgewatch_reads(pb, payload: Payload) -> None:
    official = pb.Payload()
    official.ParseFromString(encode(payload))
    # Fields edgewatch does not read, which it must skip.
    extra = official.metrics.add()
    extra.name, extra.datatype = "set", 16
    extra.dataset_value.columns.append("a")
    extra.properties.keys.append("unit")
    extra.metadata.content_type = "text/plain"
    official.uuid = "u-1"
    official.body = b"\x00\xff"
    ours = decode(official.SerializeToString())
    assert ours.metrics[:-1] == payload.metrics
    assert (ours.timestamp, ours.seq) == (payload.timestamp, payload.seq)
    assert ours.metrics[-1] == Metric("set", datatype=16)


@settings(max_examples=2000)
@given(st.binary(max_size=200))
def test_any_bytes_are_a_payload_or_a_counted_refusal(data: bytes) -> None:
    try:
        decode(data)
    except SparkplugError as e:
        assert e.reason in {"truncated", "bad_varint", "bad_field", "bad_wire_type", "bad_utf8"}


def test_sparkplug_settings_name_what_is_wrong() -> None:
    base = {"site": "s", "device": "gw", "model": {"bundle": "b"},
            "sources": [{"type": "mqtt", "topic": "t"}], "mqtt": {"host": "h"}}  # fmt: skip
    for sinks, message in (
        ([{"type": "sparkplug", "group": "a/b"}], r"sinks\[0\].group: String should match"),
        ([{"type": "sparkplug", "group": "g"}, {"type": "mqtt"}], "one upstream"),
    ):
        with pytest.raises(ConfigError, match=message):
            validate({**base, "sinks": sinks})
    with pytest.raises(ConfigError, match="need an \\[mqtt\\] broker"):
        validate({**base, "mqtt": None, "sources": [{"type": "replay", "path": "r.csv",
                  "device": "d", "channels": ["x"], "sample_rate": 1}],
                  "sinks": [{"type": "sparkplug", "group": "g"}]})  # fmt: skip


def alert(sequence: int, state: str = "raised", device: str = "pump-1") -> Alert:
    ts = datetime.fromtimestamp(1_800_000_000 + sequence, UTC)
    return Alert(
        alert_id=f"a{sequence}",
        state=state,  # type: ignore[arg-type]
        severity="warning",
        site="s",
        device=device,
        sequence=sequence,
        ts=ts,
        started_at=ts,
        score=2.0 + sequence,
        threshold=2.0,
        model={"name": "m", "version": "1", "sha256": "0" * 64},  # type: ignore[arg-type]
    )


class Host:
    """A Sparkplug host application: every message under ``spBv1.0/``, decoded with the
    official schema, and each device's aliases from its DBIRTH."""

    def __init__(self, port: int, pb) -> None:  # type: ignore[no-untyped-def]
        self.pb, self.port = pb, port
        self.subscriber = Subscriber(port, "spBv1.0/#")

    def messages(self) -> list[tuple[str, object]]:
        out = []
        for message in list(self.subscriber.messages):
            parts = message.topic.split("/")
            if parts[1] == "STATE" or parts[2] in ("NCMD", "DCMD"):
                continue  # the host's own
            payload = self.pb.Payload()
            payload.ParseFromString(message.payload)
            out.append((message.topic, payload))
        return out

    def kinds(self) -> list[str]:
        return [topic.split("/")[2] for topic, _ in self.messages()]

    def alerts(self) -> list[dict[str, object]]:
        """Each DDATA's alert metrics by name, resolved through the DBIRTH before it."""
        names: dict[int, str] = {}
        found = []
        for topic, payload in self.messages():
            kind = topic.split("/")[2]
            if kind == "DBIRTH":
                names = {m.alias: m.name for m in payload.metrics}  # type: ignore[attr-defined]
            elif kind == "DDATA":
                metrics = {names[m.alias]: m for m in payload.metrics}  # type: ignore[attr-defined]
                if "alert/id" in metrics:
                    found.append(
                        {
                            "id": metrics["alert/id"].string_value,
                            "state": metrics["alert/state"].string_value,
                            "score": metrics["alert/score"].double_value,
                            "historical": metrics["alert/id"].is_historical,
                            "device": topic.split("/")[-1],
                        }
                    )
        return found

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.subscriber.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)


def check_sequences(host: Host) -> None:
    """Each session's sequence numbers run 0, 1, 2, … (mod 256) from its NBIRTH."""
    seq = None
    for topic, payload in host.messages():
        kind = topic.split("/")[2]
        if kind == "NDEATH":
            assert not payload.HasField("seq")  # type: ignore[attr-defined]
            continue
        got = payload.seq  # type: ignore[attr-defined]
        if kind == "NBIRTH":
            assert got == 0
        else:
            assert seq is not None and got == (seq + 1) % 256, (kind, got, seq)
        seq = got


def node(port: int, spool: Spool, primary_host: str | None = None) -> SparkplugForwarder:
    broker = Broker(host="127.0.0.1", port=port, reconnect_max_s=0.2)
    return SparkplugForwarder(broker, "gw-test", ROOT + "status", spool, ("plant", "gw"),
                              primary_host)  # fmt: skip


@pytest.fixture
def queueing_broker(tmp_path):  # type: ignore[no-untyped-def]
    """Mosquitto that keeps QoS 0 messages for a host application's session while it is away,
    as Sparkplug's BIRTH and DATA messages are."""
    folder = tmp_path / "broker"
    folder.mkdir()
    mosquitto = _broker(folder, "queue_qos0_messages true\n")
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


@pytest.mark.integration
def test_births_data_death_and_alerts_across_a_broker_outage(queueing_broker, tmp_path, pb):
    host = Host(queueing_broker.port, pb)
    spool = Spool(tmp_path / "spool.sqlite", 1000, 1 << 20)
    sink = Spooled(spool, ROOT, lambda: link.notify(), telemetry=True)
    link = node(queueing_broker.port, spool)
    link.start()
    wait_for(lambda: host.kinds()[:1] == ["NBIRTH"], what="the NBIRTH")
    sink.write([alert(1), Telemetry("pump-1", 1_800_000_001.5, 3.25), alert(2, "cleared")])
    wait_for(lambda: len(host.alerts()) == 2 and spool.rows == 0, what="two alerts")
    assert host.kinds() == ["NBIRTH", "DBIRTH", "DDATA", "DDATA", "DDATA"]
    birth = host.messages()[0][1]
    assert {m.name: m.long_value for m in birth.metrics if m.name == "bdSeq"} == {"bdSeq": 0}  # type: ignore[attr-defined]

    queueing_broker.stop()
    wait_for(lambda: not link.connected, what="the node to notice")
    sink.write([alert(3), alert(4, "cleared"), alert(5, device="fan/2")])
    queueing_broker.start()
    wait_for(lambda: len(host.alerts()) == 5 and spool.rows == 0, timeout=20, what="the backlog")
    alerts = host.alerts()
    assert [a["id"] for a in alerts] == ["a1", "a2", "a3", "a4", "a5"]
    assert [a["historical"] for a in alerts] == [False, False, True, True, True]
    assert alerts[4]["device"] == "fan_2" and alerts[0]["score"] == 3.0
    second = [p for t, p in host.messages() if "/NBIRTH/" in t][1]
    assert [m.long_value for m in second.metrics if m.name == "bdSeq"] == [1]  # type: ignore[attr-defined]
    kinds = [k for k in host.kinds() if k != "NDEATH"]
    assert kinds[5:] == ["NBIRTH", "DBIRTH", "DDATA", "DDATA", "DBIRTH", "DDATA"]
    # Mosquitto, stopping, may publish the first session's will: its NDEATH, bdSeq 0.
    deaths = [p for t, p in host.messages() if "/NDEATH/" in t]
    assert all([m.long_value for m in d.metrics] == [0] for d in deaths)  # type: ignore[attr-defined]
    check_sequences(host)

    rebirth = pb.Payload()
    metric = rebirth.metrics.add()
    metric.name, metric.datatype, metric.boolean_value = "Node Control/Rebirth", BOOLEAN, True
    host.publish("spBv1.0/plant/NCMD/gw", rebirth.SerializeToString())
    wait_for(lambda: host.kinds().count("NBIRTH") == 3, what="a rebirth")
    wait_for(lambda: host.kinds()[-3:] == ["NBIRTH", "DBIRTH", "DBIRTH"], what="its DBIRTHs")
    check_sequences(host)
    births = [p for t, p in host.messages() if "/DBIRTH/" in t]
    last = {m.name: m for m in births[-2].metrics}  # type: ignore[attr-defined]
    assert last["alert/state"].string_value == "cleared" and last["score"].double_value == 3.25
    link.stop()
    wait_for(lambda: host.kinds()[-1:] == ["NDEATH"], what="the NDEATH")
    death = host.messages()[-1][1]
    assert [m.long_value for m in death.metrics] == [1]  # type: ignore[attr-defined]
    host.subscriber.close()


@pytest.mark.integration
def test_the_node_waits_for_its_primary_host(broker, tmp_path, pb):
    host = Host(broker.port, pb)
    spool = Spool(tmp_path / "spool.sqlite", 1000, 1 << 20)
    sink = Spooled(spool, ROOT, lambda: link.notify(), telemetry=False)
    link = node(broker.port, spool, primary_host="scada")
    link.start()
    wait_for(lambda: link.connected, what="a connection")
    sink.write([alert(1)])
    host.publish("spBv1.0/STATE/scada", json.dumps({"online": False}).encode(), retain=True)
    host.publish("spBv1.0/STATE/scada", b"not json")
    time.sleep(0.5)  # what the node would have published by now, had it not waited
    assert not host.kinds() and spool.rows == 1
    host.publish("spBv1.0/STATE/scada", json.dumps({"online": True, "timestamp": 1}).encode())
    wait_for(lambda: len(host.alerts()) == 1, what="births and the alert once the host is online")
    assert host.kinds() == ["NBIRTH", "DBIRTH", "DDATA"] and host.alerts()[0]["historical"]
    host.publish("spBv1.0/STATE/scada", json.dumps({"online": False}).encode())
    wait_for(lambda: not link.host_online.is_set(), what="the host offline")
    sink.write([alert(2)])
    assert spool.rows == 1
    link.stop()
    host.subscriber.close()


def node_payload(pb, seq, metrics, timestamp=None):  # type: ignore[no-untyped-def]
    """A payload as a third-party edge node writes it, with the official schema: ``metrics``
    are (name, alias, value) with a double value, a bool, a string or None."""
    payload = pb.Payload()
    payload.seq = seq
    if timestamp is not None:
        payload.timestamp = timestamp
    for name, alias, value in metrics:
        metric = payload.metrics.add()
        if name is not None:
            metric.name = name
        if alias is not None:
            metric.alias = alias
        if value is None:
            metric.datatype, metric.is_null = DOUBLE, True
        elif isinstance(value, bool):
            metric.datatype, metric.boolean_value = BOOLEAN, value
        elif isinstance(value, str):
            metric.datatype, metric.string_value = STRING, value
        else:
            metric.datatype, metric.double_value = DOUBLE, value
    return payload.SerializeToString()


SOURCE = {
    "type": "sparkplug",
    "group": "plant",
    "metrics": [
        {"device": "boiler", "channel": "t", "node": "plc1", "sparkplug_device": "b1",
         "metric": "Inputs/Temperature"},
        {"device": "boiler", "channel": "on", "node": "plc1", "sparkplug_device": "b1",
         "metric": "Inputs/Burner"},
        {"device": "line", "channel": "speed", "node": "plc1", "metric": "Line/Speed"},
    ],
}  # fmt: skip


def test_metrics_become_rows_through_the_aliases_of_the_births(pb) -> None:
    rows = SparkplugRows(SparkplugSource.model_validate(SOURCE), clock=lambda: 1_800_000_000.0)
    t = "spBv1.0/plant/{}/plc1"
    births = [
        (t.format("NBIRTH"), node_payload(pb, 0, [("Line/Speed", 1, 2.5), ("other", 2, 1.0)])),
        (t.format("DBIRTH") + "/b1", node_payload(pb, 1, [("Inputs/Temperature", 10, None),
                                                         ("Inputs/Burner", 11, False)])),
    ]  # fmt: skip
    out = [rows(topic, payload) for topic, payload in births]
    assert [b.channels for b in out[0]] == [("speed",)] and out[1] == []  # t is null yet
    ddata = node_payload(pb, 2, [(None, 10, 81.5), (None, 11, True)], timestamp=1_800_000_123_456)
    (block,) = rows(t.format("DDATA") + "/b1", ddata)
    assert (block.device, block.channels, block.ts) == ("boiler", ("t", "on"), 1_800_000_123.456)
    assert block.samples[:, 0].tolist() == [81.5, 1.0]
    assert rows(t.format("DDATA") + "/b1", node_payload(pb, 3, [(None, 99, 1.0)])) == []
    assert rows(t.format("DDATA") + "/b1", node_payload(pb, 9, [(None, 10, "hot")])) == []
    assert rows.counts.gaps == 1
    assert rows(t.format("DDEATH") + "/b1", node_payload(pb, 10, [])) == []
    assert rows(t.format("DDATA") + "/b1", node_payload(pb, 11, [(None, 10, 80.0)])) == []
    assert rows(t.format("NDATA"), node_payload(pb, 12, [(None, 1, 3.0)]))[0].ts == 1_800_000_000
    assert rows(t.format("NDATA"), node_payload(pb, 13, [(None, 1, 3.0)], 10**17)) == []
    assert rows("spBv1.0/plant/NDATA/plc9", node_payload(pb, 0, [])) == []
    assert rows(t.format("NDATA"), b"\xff") == []
    assert dict(rows.counts.rejected) == {
        "unknown_alias": 1,
        "not_numeric": 1,
        "before_birth": 1,
        "bad_time": 1,
        "bad_topic": 1,
        "truncated": 1,
    }


@pytest.mark.integration
def test_an_agent_reads_a_third_party_node(broker, pb) -> None:
    config = SparkplugSource.model_validate(SOURCE)
    blocks: list[Block] = []
    reader = MqttReader(config, Broker(host="127.0.0.1", port=broker.port), "in", blocks.append)
    stop = threading.Event()
    threading.Thread(target=reader.run, args=(stop,), daemon=True).start()
    wait_for(reader.connected.is_set, what="the source's subscription")
    host = Host(broker.port, pb)
    host.publish("spBv1.0/plant/NBIRTH/plc1", node_payload(pb, 0, [("Line/Speed", 1, 2.5)]))
    for seq in range(1, 21):
        host.publish("spBv1.0/plant/NDATA/plc1", node_payload(pb, seq, [(None, 1, float(seq))]))
    wait_for(lambda: len(blocks) == 21, what="a row per message")
    assert [b.samples[0, 0] for b in blocks] == [2.5, *range(1, 21)]
    assert reader.counts.accepted == 21 and reader.counts.gaps == 0
    stop.set()
    host.subscriber.close()


def test_the_readme_sparkplug_example_passes_check_config(tmp_path, capsys) -> None:
    section = (REPO / "README.md").read_text().split("#### Sparkplug B", 1)[1]
    text = re.search(r"```toml\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    config = tmp_path / "agent.toml"
    config.write_text(text)
    assert main(["check-config", str(config)]) == 0, capsys.readouterr()
    assert "ok: 1 sources, 1 sinks" in capsys.readouterr().out


def test_the_example_configs_sparkplug_sink_takes_the_mqtt_sinks_place(tmp_path) -> None:
    text = (REPO / "deploy" / "agent.example.toml").read_text()
    commented = re.search(r'# \[\[sinks\]\]\n# type = "sparkplug"\n(?:#.*\n)*', text)
    mqtt = re.search(r'\[\[sinks\]\]\ntype = "mqtt"\n(?:.+\n)*', text)
    assert commented is not None and mqtt is not None
    sparkplug = "".join(
        line[2:] + "\n" for line in commented.group(0).splitlines() if not line.startswith("# #")
    )
    key = tmp_path / "bundle.pub"
    key.write_bytes(b"k" * 32)
    config = parse_config(
        text.replace(mqtt.group(0), sparkplug), env={"EDGEWATCH_MODEL__PUBLIC_KEY": str(key)}
    )
    sink = next(s for s in config.sinks if s.type == "sparkplug")
    assert (sink.group, sink.node, sink.primary_host) == ("plant-a", "gateway-7", "scada")
