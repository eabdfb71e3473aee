"""``edgewatch bench protocols``: what the plant protocols cost the gateway to ingest.

A pymodbus TCP server runs in a process of its own on loopback, with ``SLAVES`` slaves. The
Modbus source polls each for ``TAGS`` float32 tags in one read, and hands the rows on: the
figure is reads (and tag values) per CPU second of this process, the server's work not in it.
The reference, in the same run and on the same server, is pymodbus's own client reading the
same registers, without decoding the tags or making rows: the ratio says what edgewatch's own
client costs beside it. Rounds alternate between the two; medians are quoted.
"""

import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pymodbus.client import ModbusTcpClient

from edgewatch.agent.sources.modbus import ModbusReader, TcpLink
from edgewatch.agent.sources.settings import ModbusSource

SLAVES = 10
TAGS = 20
POLLS = 50
_SERVER = """
import sys
from pymodbus.server import StartTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
block = [SimData(0, count=100, values=16968, datatype=DataType.REGISTERS)]
StartTcpServer([SimDevice(id=s, simdata=block) for s in range(1, {slaves} + 1)],
               address=("127.0.0.1", int(sys.argv[1])))
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _server(port: int) -> Iterator[None]:
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVER.format(slaves=SLAVES), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the pymodbus server did not start") from None
                time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(10)


def _source(port: int) -> ModbusSource:
    tags = [
        {"device": f"m{s}", "channel": f"t{i}", "slave": s, "address": 2 * i, "type": "float32"}
        for s in range(1, SLAVES + 1)
        for i in range(TAGS)
    ]
    return ModbusSource.model_validate(
        {"type": "modbus", "transport": "tcp", "host": "127.0.0.1", "port": port, "tags": tags}
    )


def _cpu_per_read(poll: Callable[[], None]) -> float:
    start = time.process_time()
    for _ in range(POLLS):
        poll()
    return (time.process_time() - start) / (POLLS * SLAVES)


def run(rounds: int = 5) -> dict[str, Any]:
    port = _port()
    rows: list[object] = []
    with _server(port):
        reader = ModbusReader(_source(port), rows.append)
        link = TcpLink("127.0.0.1", port, 2.0)
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=2.0)
        client.connect()

        def reference() -> None:
            for slave in range(1, SLAVES + 1):
                client.read_holding_registers(0, count=2 * TAGS, device_id=slave)

        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(_cpu_per_read(lambda: reader.poll(link)))
            theirs.append(_cpu_per_read(reference))
        link.close()
        client.close()
    refused = sum(reader.counts.rejected.values())
    if refused or len(rows) != rounds * POLLS * SLAVES:
        raise RuntimeError(f"the bench's polls were refused: {dict(reader.counts.rejected)}")
    cpu = statistics.median(ours)
    reference_cpu = statistics.median(theirs)
    return {
        "modbus": {
            "slaves": SLAVES,
            "tags_per_read": TAGS,
            "reads_per_cpu_s": 1 / cpu,
            "values_per_cpu_s": TAGS / cpu,
            "pymodbus_reads_per_cpu_s": 1 / reference_cpu,
            "ratio_to_pymodbus": reference_cpu / cpu,
            "rounds": rounds,
        }
    }


def render(result: dict[str, Any]) -> str:
    """The figures, one line each.

    >>> print(render({"modbus": {"slaves": 10, "tags_per_read": 20, "reads_per_cpu_s": 5000.0,
    ...     "values_per_cpu_s": 100000.0, "pymodbus_reads_per_cpu_s": 2500.0,
    ...     "ratio_to_pymodbus": 2.0, "rounds": 5}}))
    Modbus TCP, 10 slaves, one read of 20 float32 tags each (median of 5 rounds)
      5,000 reads per CPU second, 100,000 tag values per CPU second
      pymodbus's client on the same reads: 2,500 per CPU second (edgewatch 2.00x its speed)
    """
    m = result["modbus"]
    return "\n".join(
        [
            f"Modbus TCP, {m['slaves']} slaves, one read of {m['tags_per_read']} float32 tags"
            f" each (median of {m['rounds']} rounds)",
            f"  {m['reads_per_cpu_s']:,.0f} reads per CPU second,"
            f" {m['values_per_cpu_s']:,.0f} tag values per CPU second",
            f"  pymodbus's client on the same reads: {m['pymodbus_reads_per_cpu_s']:,.0f} per CPU"
            f" second (edgewatch {m['ratio_to_pymodbus']:.2f}x its speed)",
        ]
    )
