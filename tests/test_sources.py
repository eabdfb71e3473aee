"""Sources on real parts: serial ports made by socat, a Mosquitto broker, and replayed files."""

import threading
from functools import partial

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from edgewatch.agent.clock import ManualClock
from edgewatch.agent.config import Broker
from edgewatch.agent.framing import encode_block, encode_frame
from edgewatch.agent.metrics import Registry
from edgewatch.agent.sources.mqtt import MqttReader
from edgewatch.agent.sources.replay import (
    Recording,
    RecordingError,
    ReplayReader,
    load_recording,
)
from edgewatch.agent.sources.serial import SerialReader
from edgewatch.agent.sources.settings import MqttSource, SerialSource
from edgewatch.agent.supervisor import Supervisor
from tests.conftest import wait_for


class Collected(list):
    def __call__(self, block):
        self.append(block)
        return True


def serial_source(port, fmt="binary", channels=("x", "y")) -> SerialSource:
    return SerialSource(
        type="serial",
        port=str(port),
        device="press",
        channels=channels,
        sample_rate=1000,
        format=fmt,
        reconnect_max_s=0.2,
    )


def started(reader):
    stop = threading.Event()
    thread = threading.Thread(target=reader.run, args=(stop,), daemon=True)
    thread.start()
    return stop, thread


def frames(count, start=0, channels=2, n=50):
    rng = np.random.default_rng(start)
    sent = []
    for i in range(start, start + count):
        samples = rng.normal(size=(channels, n)).astype(np.float32)
        sent.append(samples)
        yield samples, encode_frame(i, encode_block("ignored", i * n / 1000, 1000.0, samples))


def test_serial_binary_frames_with_garbage_between_them(ptys):
    blocks = Collected()
    reader = SerialReader(serial_source(ptys.agent), blocks)
    stop, thread = started(reader)
    wait_for(lambda: reader.connected, what="the port open")
    sent = []
    with serial.Serial(str(ptys.device)) as device:
        for samples, frame in frames(20):
            sent.append(samples)
            device.write(b"\x55\x00noise" + frame)
    wait_for(lambda: len(blocks) == 20, what="20 blocks")
    stop.set()
    thread.join()
    for block, samples in zip(blocks, sent, strict=True):
        np.testing.assert_array_equal(block.samples, samples)
        assert (block.device, block.channels) == ("press", ("x", "y"))
    assert reader.counts.accepted == 20 and reader.counts.garbage_bytes == 20 * 7
    assert reader.counts.rejected["garbage"] == 20
    assert reader.counts.gaps == 0


def test_serial_csv_lines_are_dated_from_the_sample_rate(ptys):
    blocks = Collected()
    reader = SerialReader(serial_source(ptys.agent, "csv"), blocks, clock=lambda: 100.0)
    stop, thread = started(reader)
    wait_for(lambda: reader.connected, what="the port open")
    with serial.Serial(str(ptys.device)) as device:
        device.write(b"1,2\n3,4\nbad,line\n5,6,7\n")
        wait_for(lambda: len(blocks) == 1, what="a block")
        device.write(b"5,6\n")
        wait_for(lambda: len(blocks) == 2, what="two blocks")
    stop.set()
    thread.join()
    assert blocks[0].samples.tolist() == [[1, 3], [2, 4]]
    assert (blocks[0].ts, blocks[1].ts) == (100.0 - 0.002, 100.0)
    assert reader.counts.rejected == {"not_a_number": 1, "wrong_field_count": 1}


def test_a_serial_port_that_goes_away_is_reopened(ptys):
    blocks = Collected()
    reader = SerialReader(serial_source(ptys.agent), blocks)
    stop, thread = started(reader)
    wait_for(lambda: reader.connected, what="the port open")
    with serial.Serial(str(ptys.device)) as device:
        for _, frame in frames(3):
            device.write(frame)
    wait_for(lambda: len(blocks) == 3, what="the first blocks")
    ptys.stop()
    wait_for(lambda: not reader.connected, what="the loss noticed")
    ptys.start()
    wait_for(lambda: reader.connected, timeout=15, what="the port reopened")
    with serial.Serial(str(ptys.device)) as device:
        for _, frame in frames(3, start=3):
            device.write(frame)
    wait_for(lambda: len(blocks) == 6, what="blocks after reopening")
    stop.set()
    thread.join()
    assert reader.opens == 2 and reader.counts.gaps == 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=300) | st.sampled_from(["frame", "cut", "huge"]), max_size=12))
def test_any_mix_of_garbage_truncated_and_oversized_frames_loses_no_good_frame(items):
    blocks = Collected()
    reader = SerialReader(serial_source("/dev/null"), blocks)
    good = list(frames(len(items)))
    expected = 0
    stream = b""
    for item, (_, frame) in zip(items, good, strict=False):
        if item == "frame":
            stream += frame
            expected += 1
        elif item == "cut":
            stream += frame[: len(frame) // 2]
        elif item == "huge":
            stream += b"\x55\xaa\xff\xff" + bytes(8)
        else:
            stream += item.replace(b"\x55\xaa", b"")
    # Pieces of any size, then a final good frame that flushes whatever a cut frame held back.
    for start in range(0, len(stream), 7):
        reader.feed(stream[start : start + 7])
    reader.feed(b"\x00" * 80 + good[-1][1] if good else b"")
    assert len(blocks) >= expected
    assert reader.counts.accepted == len(blocks)


def publisher(port):
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sensor")
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


@pytest.mark.parametrize("fmt", ["json", "binary"])
def test_mqtt_source_decodes_and_counts(broker, fmt):
    blocks = Collected()
    config = MqttSource(type="mqtt", topic="sensors/#", format=fmt, max_inflight=5)
    reader = MqttReader(config, Broker(host="127.0.0.1", port=broker.port), "agent-in", blocks)
    stop, thread = started(reader)
    wait_for(reader.connected.is_set, what="the source connected")
    samples = np.arange(6, dtype=np.float32).reshape(2, 3)
    good = (
        b'{"device":"m1","ts":1.5,"sample_rate":10,"channels":["a","b"],"values":[[0,1,2],[3,4,5]]}'
        if fmt == "json"
        else encode_block("m1", 1.5, 10.0, samples)
    )
    client = publisher(broker.port)
    for payload in (good, b"garbage", good):
        client.publish("sensors/m1", payload, qos=1).wait_for_publish(5)
    wait_for(lambda: len(blocks) == 2, what="two blocks")
    stop.set()
    thread.join()
    client.disconnect()
    assert blocks[0].device == "m1" and blocks[0].samples.tolist() == samples.tolist()
    assert reader.counts.accepted == 2 and sum(reader.counts.rejected.values()) == 1


GOOD_JSON = b'{"device":"m1","ts":1.5,"sample_rate":10,"channels":["a"],"values":[[0,1,2]]}'


def test_hostile_json_is_counted_by_reason_and_the_source_keeps_reading(broker):
    blocks = Collected()
    supervisor = Supervisor(Registry())
    config = MqttSource(type="mqtt", topic="sensors/#", format="json", max_inflight=5)
    broker_config = Broker(host="127.0.0.1", port=broker.port)
    guard = partial(supervisor.guard, "source0")
    reader = MqttReader(config, broker_config, "agent-in", blocks, guard)
    stop, thread = started(reader)
    wait_for(reader.connected.is_set, what="the source connected")
    hostile = [
        GOOD_JSON.replace(b"1.5", b"1" * 400),
        GOOD_JSON.replace(b"1.5", b"1e12"),
        GOOD_JSON.replace(b'"sample_rate":10', b'"sample_rate":' + b"9" * 400),
        b"[" * 100_000,
        b'{"ts": ' + b"1" * 5000 + b"}",
        GOOD_JSON.replace(b"[0,1,2]", b'["1.5",true,2]'),
    ]
    client = publisher(broker.port)
    for payload in [*hostile, GOOD_JSON]:
        client.publish("sensors/m1", payload, qos=1).wait_for_publish(5)
    wait_for(lambda: len(blocks) == 1, what="the good block after the hostile ones")
    stop.set()
    thread.join()
    client.disconnect()
    assert reader.counts.rejected == {"bad_time": 2, "bad_rate": 1, "bad_json": 3}
    assert supervisor.failures.values == {}


def test_an_exception_in_a_paho_callback_is_counted_and_the_source_goes_on(broker):
    taken = []

    def offer(block):
        taken.append(block)
        if len(taken) == 1:
            raise RuntimeError("injected")
        return True

    supervisor = Supervisor(Registry())
    config = MqttSource(type="mqtt", topic="s", format="json", max_inflight=5)
    broker_config = Broker(host="127.0.0.1", port=broker.port)
    reader = MqttReader(config, broker_config, "in", offer, partial(supervisor.guard, "source0"))
    stop, thread = started(reader)
    wait_for(reader.connected.is_set, what="the source connected")
    client = publisher(broker.port)
    for _ in range(2):
        client.publish("s", GOOD_JSON, qos=1).wait_for_publish(5)
    wait_for(lambda: len(taken) == 2, what="the block after the one that raised")
    stop.set()
    thread.join()
    client.disconnect()
    assert supervisor.failures.values == {("source0",): 1.0}


def test_a_pipeline_that_waits_leaves_messages_at_the_broker_without_loss(broker):
    gate = threading.Event()
    taken = []

    def slow(block):
        taken.append(block)
        gate.wait(10)
        return True

    config = MqttSource(type="mqtt", topic="s", format="binary", max_inflight=3)
    reader = MqttReader(config, Broker(host="127.0.0.1", port=broker.port), "agent-in", slow)
    stop, thread = started(reader)
    wait_for(reader.connected.is_set, what="the source connected")
    client = publisher(broker.port)
    for i in range(20):
        client.publish("s", encode_block("m", i, 10.0, np.ones((1, 4))), qos=1)
    wait_for(lambda: len(taken) == 1, what="the first block")
    gate.set()
    wait_for(lambda: len(taken) == 20, what="every block, once the pipeline takes them")
    assert [b.ts for b in taken] == list(range(20))
    stop.set()
    thread.join()
    client.disconnect()


class FakeClock(ManualClock):
    def __init__(self):
        super().__init__()
        self.slept = []

    def sleep(self, seconds):
        self.slept.append(seconds)
        super().sleep(seconds)


@pytest.mark.parametrize("speed, waits", [(1.0, 0.1), (10.0, 0.01), ("max", None)])
def test_replay_paces_blocks_on_its_clock(speed, waits):
    blocks = Collected()
    clock = FakeClock()
    samples = np.arange(2000, dtype=np.float32).reshape(2, 1000)
    recording = Recording(samples)
    reader = ReplayReader(recording, "m", ("a", "b"), 100.0, speed, blocks, clock, start_ts=50.0)
    reader.run(threading.Event())
    assert [b.ts for b in blocks] == [50.0 + i / 10 for i in range(100)]
    np.testing.assert_array_equal(np.concatenate([b.samples for b in blocks], axis=1), samples)
    if waits is None:
        assert clock.slept == []
    else:
        assert len(clock.slept) == 99 and np.allclose(clock.slept, waits)


def test_a_recording_is_timed_by_its_own_times_gaps_and_all(tmp_path):
    path = tmp_path / "run.csv"
    path.write_text("time,a\n100,1\n101,2\n102,3\n110,4\n111,5\n109,6\n")
    with pytest.raises(RecordingError, match="line 7, column 'time': goes back in time"):
        load_recording(path, ["a"])
    recording = load_recording(path, ["a"], time_order="drop")
    assert recording.times.tolist() == [100, 101, 102, 110, 111]
    blocks = Collected()
    ReplayReader(recording, "m", ("a",), 1.0, "max", blocks).run(threading.Event())
    assert [(b.ts, b.samples.shape[1]) for b in blocks] == [
        (100, 1),
        (101, 1),
        (102, 1),
        (110, 1),
        (111, 1),
    ]
    ten_hz = ReplayReader(recording, "m", ("a",), 1.0, "max", blocks, start_ts=0.0)
    assert ten_hz.times.tolist() == [0, 1, 2, 10, 11]
    assert load_recording(path, ["a"], time_order="sort").samples.tolist() == [[1, 2, 3, 6, 4, 5]]
    assert load_recording(path, ["a"], timestamps=False).times is None


def test_recordings_are_read_by_channel_name_and_refused_clearly(tmp_path):
    good = tmp_path / "skab.csv"
    good.write_text("datetime;b;a;anomaly\n2020-01-01;1;2;0\n2020-01-01;3;4;1\n")
    assert load_recording(good, ["a", "b"]).samples.tolist() == [[2, 4], [1, 3]]
    np.save(tmp_path / "r.npy", np.ones((5, 3)))
    cases = [
        (good, ["a", "c"], "no column 'c'; the header has ['datetime', 'b', 'a', 'anomaly']"),
        (tmp_path / "r.npy", ["a", "b"], "expected [samples, 2]"),
        (tmp_path / "missing.csv", ["a"], "No such file"),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n1,x\n")
    cases.append((bad, ["a", "b"], "line 3, column 'b': 'x' is not a number"))
    nan = tmp_path / "nan.csv"
    nan.write_text("a\n1\nnan\n")
    cases.append((nan, ["a"], "row 1: NaN or inf"))
    for path, channels, message in cases:
        with pytest.raises(RecordingError, match=message.replace("[", r"\[")):
            load_recording(path, channels)
