"""The Modbus source: its wire codec against pymodbus, its settings, and polls of a real pymodbus
server, over TCP and RTU on a socat pair, with slaves that die, busy slaves and CRC errors."""

import re
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.client import ModbusTcpClient
from pymodbus.framer import FramerRTU

from edgewatch.agent.assembly import assemble
from edgewatch.agent.cli import main
from edgewatch.agent.config import ConfigError, validate
from edgewatch.agent.framing import Block
from edgewatch.agent.modbus import ModbusError, Read, crc16, plan, rtu_pdu, tcp_pdu, values
from edgewatch.agent.sources.modbus import ModbusReader
from edgewatch.agent.sources.settings import ModbusSource, Tag
from tests.conftest import free_port, wait_for
from tests.modbus_server import Slaves, serving

TYPES = ModbusTcpClient.DATATYPE
README = Path(__file__).resolve().parents[1] / "README.md"


def answer(tag: Tag, registers: list[int], first: int = 0) -> float:
    """``tag``'s value in a holding-register response carrying ``registers`` from ``first``."""
    read = Read(1, "holding", first, len(registers), (tag,))
    pdu = bytes([3, 2 * len(registers)]) + np.array(registers, ">u2").tobytes()
    return values(read, pdu)[0]


def tcp_source(port: int, tags: list[dict[str, object]], **fields: object) -> ModbusSource:
    return ModbusSource.model_validate(
        {"type": "modbus", "transport": "tcp", "host": "127.0.0.1", "port": port, "tags": tags}
        | fields
    )


@given(st.binary(max_size=300))
def test_the_crc_is_pymodbus_own(data: bytes) -> None:
    assert crc16(data) == int.from_bytes(FramerRTU.compute_CRC(data).to_bytes(2, "big"), "little")


@given(
    st.sampled_from(["int16", "uint16", "int32", "uint32", "float32", "float64"]),
    st.sampled_from(["big", "little"]),
    st.lists(st.integers(0, 0xFFFF), min_size=4, max_size=4),
)
def test_values_are_read_as_pymodbus_reads_them(kind: str, order: str, registers: list[int]):
    tag = Tag(device="d", channel="c", address=0, type=kind, word_order=order)  # type: ignore[arg-type]
    expected = ModbusTcpClient.convert_from_registers(
        registers[: tag.words], getattr(TYPES, kind.upper()), word_order=order
    )
    got = answer(tag, registers[: tag.words])
    assert got == pytest.approx(float(expected), nan_ok=True)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("words_order", "bytes_order", "registers"),
    [
        ("big", "big", [0x4148, 0x0000]),  # ABCD
        ("little", "big", [0x0000, 0x4148]),  # CDAB
        ("big", "little", [0x4841, 0x0000]),  # BADC
        ("little", "little", [0x0000, 0x4841]),  # DCBA
    ],
)
def test_every_word_and_byte_order_of_a_float(words_order, bytes_order, registers) -> None:
    tag = Tag(
        device="d",
        channel="c",
        address=0,
        type="float32",
        word_order=words_order,
        byte_order=bytes_order,
        scale=2.0,
        offset=-1.0,
    )
    assert answer(tag, registers) == 24.0


def test_bits_of_a_register_and_of_coils() -> None:
    tag = Tag(device="d", channel="c", address=4, type="bit", bit=9)
    assert answer(tag, [0, 1 << 9], first=3) == 1.0
    assert answer(tag, [0, 1 << 8], first=3) == 0.0
    coils = [Tag(device="d", channel=f"c{i}", table="coil", address=i) for i in range(11)]
    read = Read(1, "coil", 0, 11, tuple(coils))
    bits = values(read, bytes([1, 2, 0b0000_0100, 0b0000_0100]))
    assert bits == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]


def test_tags_are_planned_into_the_fewest_reads_each_table_allows() -> None:
    tags = [Tag(device="d", channel=f"c{i}", address=i) for i in range(130)]
    tags.append(Tag(device="d", channel="other", slave=2, address=0))
    tags.append(Tag(device="d", channel="input", table="input", address=0))
    reads = plan(tags)
    assert [(r.slave, r.table, r.address, r.count) for r in reads] == [
        (1, "holding", 0, 125),
        (1, "holding", 125, 5),
        (1, "input", 0, 1),
        (2, "holding", 0, 1),
    ]
    assert sum(len(r.tags) for r in reads) == len(tags)


def test_responses_that_do_not_answer_are_refused_by_reason() -> None:
    tags = (Tag(device="d", channel="a", address=0), Tag(device="d", channel="b", address=1))
    read = Read(7, "holding", 0, 2, tags)
    good = bytes([7, 3, 4, 0, 1, 0, 2])
    framed = good + crc16(good).to_bytes(2, "little")
    assert values(read, rtu_pdu(read, framed)) == [1, 2]
    cases = {
        "crc": framed[:-1] + bytes([framed[-1] ^ 1]),
        "bad_response": bytes([8, *good[1:]]) + crc16(bytes([8, *good[1:]])).to_bytes(2, "little"),
    }
    for reason, frame in cases.items():
        with pytest.raises(ModbusError) as e:
            rtu_pdu(read, frame)
        assert e.value.reason == reason
    for reason, pdu in {
        "exception_illegal_address": bytes([0x83, 2]),
        "exception_other": bytes([0x83, 99]),
        "bad_response": bytes([4, 4, 0, 1, 0, 2]),
    }.items():
        with pytest.raises(ModbusError) as e:
            values(read, pdu)
        assert e.value.reason == reason
    with pytest.raises(ModbusError, match="MBAP"):
        tcp_pdu(read, 5, struct.pack(">HHHB", 6, 0, 7, 7) + good[1:])


@settings(max_examples=500)
@given(st.binary(max_size=270), st.sampled_from(["coil", "holding"]))
def test_any_bytes_are_values_or_a_counted_refusal(frame: bytes, table: str) -> None:
    tags = tuple(
        Tag(device="d", channel=f"c{i}", table=table, address=i, type=None if i % 2 else "bit",
            bit=None if i % 2 or table == "coil" else 3)
        for i in range(10)
    )  # fmt: skip
    read = Read(1, table, 0, 10, tags)
    for decode in (lambda: rtu_pdu(read, frame), lambda: tcp_pdu(read, 1, frame)):
        try:
            numbers = values(read, decode())
        except ModbusError as e:
            assert e.reason
        else:
            assert len(numbers) == 10


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tags": [{"device": "d", "channel": "c", "table": "coil", "address": 0,
                    "type": "float32"}]}, "is one bit"),
        ({"tags": [{"device": "d", "channel": "c", "address": 0, "type": "bit"}]}, "bit = 0..15"),
        ({"tags": [{"device": "d", "channel": "c", "address": 65534, "type": "float64"}]},
         "runs past register 65535"),
        ({"tags": [{"device": "d", "channel": "c", "address": 0},
                   {"device": "d", "channel": "c", "address": 1}]}, "d.c"),
        ({"host": None}, "needs a host"),
        ({"transport": "rtu", "host": None, "serial": "/dev/ttyUSB0", "baudrate": 7}, "baudrate"),
        ({"transport": "rtu", "host": None, "serial": "/dev/ttyUSB0",
          "tags": [{"device": "d", "channel": "c", "slave": 0, "address": 0}]}, "1 to 247"),
        ({"tags": [{"device": "d", "channel": "c", "address": 70000}]}, "65535"),
    ],
)  # fmt: skip
def test_wrong_modbus_settings_are_named(fields: dict[str, object], message: str) -> None:
    source = {
        "type": "modbus",
        "transport": "tcp",
        "host": "plc",
        "tags": [{"device": "d", "channel": "c", "address": 0}],
    } | fields
    with pytest.raises(ConfigError, match=message):
        validate({"site": "s", "device": "g", "model": {"bundle": "b"}, "sources": [source],
                  "sinks": [{"type": "stdout"}]})  # fmt: skip


def test_a_device_comes_from_one_source_only() -> None:
    modbus = {"type": "modbus", "transport": "tcp", "host": "plc",
              "tags": [{"device": "pump", "channel": "c", "address": 0}]}  # fmt: skip
    serial = {"type": "serial", "port": "/dev/ttyS0", "device": "pump", "channels": ["x"],
              "sample_rate": 10}  # fmt: skip
    with pytest.raises(ConfigError, match="comes from one source, not several"):
        validate({"site": "s", "device": "g", "model": {"bundle": "b"},
                  "sources": [modbus, serial], "sinks": [{"type": "stdout"}]})  # fmt: skip


PUMP = [
    {"device": "pump", "channel": "temperature", "address": 0, "type": "float32"},
    {"device": "pump", "channel": "running", "table": "coil", "address": 3},
    {"device": "pump", "channel": "current", "table": "input", "address": 10, "type": "int16",
     "scale": 0.1},
]  # fmt: skip
FAN = [{"device": "fan", "channel": "speed", "slave": 2, "address": 0, "type": "uint32",
        "word_order": "little"}]  # fmt: skip


def fill(slaves: Slaves, temperature: float, speed: int) -> None:
    slaves.set(1, "holding", 0, list(struct.unpack(">HH", struct.pack(">f", temperature))))
    slaves.set(1, "input", 10, [(-123) & 0xFFFF])
    slaves.tables[1]["coil"][3] = 1
    slaves.set(2, "holding", 0, [speed & 0xFFFF, speed >> 16])


def rows(blocks: list[Block], device: str) -> list[dict[str, float]]:
    return [
        dict(zip(b.channels, b.samples[:, 0].tolist(), strict=True))
        for b in blocks
        if b.device == device
    ]


@pytest.mark.integration
def test_tcp_polls_every_slave_and_a_dead_one_does_not_hold_up_the_others() -> None:
    port, slaves = free_port(), Slaves((1, 2))
    fill(slaves, 21.5, 70_000)
    source = tcp_source(port, PUMP + FAN, interval_s=0.05, timeout_s=0.2, backoff_max_s=0.8)
    blocks: list[Block] = []
    reader = ModbusReader(source, lambda b: blocks.append(b) or True)
    stop = threading.Event()
    with serving(slaves, port=port):
        threading.Thread(target=reader.run, args=(stop,), daemon=True).start()
        wait_for(lambda: len(rows(blocks, "fan")) >= 3, what="rows of both devices")
        assert rows(blocks, "pump")[0] == {"temperature": 21.5, "running": 1.0, "current": -12.3}
        assert rows(blocks, "fan")[0] == {"speed": 70_000.0}
        fill(slaves, 30.25, 5)
        wait_for(lambda: rows(blocks, "fan")[-1] == {"speed": 5.0}, what="the changed registers")
        assert rows(blocks, "pump")[-1]["temperature"] == 30.25

        slaves.faults.dead.add(2)
        pumped = len(rows(blocks, "pump"))
        wait_for(lambda: len(rows(blocks, "pump")) >= pumped + 30, what="the live slave's rows")
        timeouts = reader.counts.rejected["timeout"]
        assert 2 <= timeouts <= 6, "a dead slave is backed off, not asked every poll"
        assert reader.counts.rejected["row_incomplete"] >= 30

        slaves.faults.dead.clear()
        fanned = len(rows(blocks, "fan"))
        wait_for(lambda: len(rows(blocks, "fan")) > fanned, what="the slave back")

        slaves.faults.busy.add(1)
        wait_for(lambda: reader.counts.rejected["exception_busy"] >= 3, what="busy answers")
        slaves.faults.busy.clear()
        stop.set()
    assert reader.counts.accepted > 0


@pytest.mark.integration
def test_a_lost_tcp_server_is_reconnected() -> None:
    port, slaves = free_port(), Slaves((1, 2))
    fill(slaves, 1.0, 0)
    source = tcp_source(port, PUMP, interval_s=0.05, timeout_s=0.2, backoff_max_s=0.5)
    blocks: list[Block] = []
    reader = ModbusReader(source, lambda b: blocks.append(b) or True)
    stop = threading.Event()
    threading.Thread(target=reader.run, args=(stop,), daemon=True).start()
    wait_for(lambda: reader.counts.rejected["link_down"] >= 1, what="no server yet")
    with serving(slaves, port=port):
        wait_for(lambda: len(blocks) >= 2, what="rows once the server is up")
    seen = len(blocks)
    with serving(slaves, port=port):
        wait_for(lambda: len(blocks) >= seen + 2, timeout=15, what="rows after a restart")
    stop.set()


@pytest.mark.integration
def test_rtu_on_a_serial_line_counts_crc_errors_and_reads_on(ptys) -> None:
    slaves = Slaves((1, 2))
    fill(slaves, 4.5, 12)
    source = ModbusSource.model_validate(
        {
            "type": "modbus",
            "transport": "rtu",
            "serial": str(ptys.agent),
            "tags": PUMP + FAN,
            "interval_s": 0.1,
            "timeout_s": 0.3,
            "backoff_max_s": 1.0,
            "parity": "N",
        }  # a pty: no parity
    )
    blocks: list[Block] = []
    reader = ModbusReader(source, lambda b: blocks.append(b) or True)
    stop = threading.Event()
    with serving(slaves, serial=str(ptys.device)):
        threading.Thread(target=reader.run, args=(stop,), daemon=True).start()
        wait_for(lambda: len(rows(blocks, "fan")) >= 2, what="rows over RTU")
        assert rows(blocks, "pump")[0] == {"temperature": 4.5, "running": 1.0, "current": -12.3}
        slaves.faults.corrupt = 3
        wait_for(lambda: reader.counts.rejected["crc"] == 3, what="three CRC errors")
        slaves.faults.dead.add(1)
        fanned = len(rows(blocks, "fan"))
        wait_for(lambda: len(rows(blocks, "fan")) >= fanned + 5, what="slave 2 polled on")
        assert reader.counts.rejected["timeout"] >= 1
        stop.set()


def test_an_agent_with_a_modbus_source_counts_its_refusals() -> None:
    config = validate(
        {
            "site": "s",
            "device": "g",
            "model": {"bundle": "b", "watch": False},
            "sources": [{"type": "modbus", "transport": "tcp", "host": "plc", "tags": PUMP}],
            "sinks": [{"type": "stdout"}],
        }
    )
    parts = assemble(config)
    reader = parts.sources[0]
    assert isinstance(reader, ModbusReader)
    reader.counts.rejected["timeout"] += 2
    assert parts.registry.value("frames_rejected_total", "0:modbus", "timeout") == 2


def test_the_readme_modbus_example_passes_check_config(tmp_path, capsys) -> None:
    section = README.read_text().split("#### Modbus", 1)[1]
    text = re.search(r"```toml\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    config = tmp_path / "agent.toml"
    config.write_text(text.replace("/var/lib/edgewatch/learned", str(tmp_path / "learned")))
    assert main(["check-config", str(config)]) == 0, capsys.readouterr()
    assert "ok: 1 sources" in capsys.readouterr().out
