"""``edgewatch bench protocols``: what the plant protocols cost the gateway to ingest.

Each server runs in a process of its own on loopback, so the figures are CPU seconds of this
process alone. Rounds alternate between edgewatch and a reference in the same run; medians
are quoted.

- **Modbus**: a pymodbus TCP server with ``SLAVES`` slaves. The Modbus source polls each for
  ``TAGS`` float32 tags in one read and hands the rows on. The reference is pymodbus's own
  client reading the same registers, without decoding the tags or making rows.
- **OPC UA**: an asyncua server writing ``VARIABLES`` doubles every 10 ms. The OPC UA source
  subscribes to all of them (ten devices of ten channels) and makes rows. The reference is
  asyncua's client on the same subscription, with a handler that does nothing.
"""

import asyncio
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from asyncua.client.client import Client
from pymodbus.client import ModbusTcpClient

from edgewatch.agent.sources.modbus import ModbusReader, TcpLink
from edgewatch.agent.sources.opcua import OpcuaReader
from edgewatch.agent.sources.settings import ModbusSource, OpcuaSource

SLAVES = 10
TAGS = 20
POLLS = 50
VARIABLES = 100
OPCUA_S = 3.0
_SERVER = """
import sys
from pymodbus.server import StartTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
block = [SimData(0, count=100, values=16968, datatype=DataType.REGISTERS)]
StartTcpServer([SimDevice(id=s, simdata=block) for s in range(1, {slaves} + 1)],
               address=("127.0.0.1", int(sys.argv[1])))
"""


_OPCUA_SERVER = """
import asyncio, json, sys
from asyncua import Server

async def main(port):
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    ns = await server.register_namespace("urn:edgewatch:bench")
    machine = await server.nodes.objects.add_object(ns, "Machine")
    variables = [await machine.add_variable(ns, f"v{i}", 0.0) for i in range({variables})]
    async with server:
        print(json.dumps([v.nodeid.to_string() for v in variables]), flush=True)
        k = 0
        while True:
            k += 1
            for v in variables:
                await v.write_value(float(k))
            await asyncio.sleep(0.01)

asyncio.run(main(int(sys.argv[1])))
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _server(port: int, script: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the bench's server did not start") from None
                time.sleep(0.1)
        yield process
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


def _modbus(rounds: int) -> dict[str, Any]:
    port = _port()
    rows: list[object] = []
    with _server(port, _SERVER.format(slaves=SLAVES)):
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
        "slaves": SLAVES,
        "tags_per_read": TAGS,
        "reads_per_cpu_s": 1 / cpu,
        "values_per_cpu_s": TAGS / cpu,
        "pymodbus_reads_per_cpu_s": 1 / reference_cpu,
        "ratio_to_pymodbus": reference_cpu / cpu,
        "rounds": rounds,
    }


class _Count:
    """asyncua's handler that only counts the values."""

    def __init__(self) -> None:
        self.values = 0

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        self.values += 1


def _cpu_per_value(start: Callable[[threading.Event], None], values: Callable[[], int]) -> float:
    """CPU seconds of this process per value, over ``OPCUA_S`` once values flow."""
    stop = threading.Event()
    thread = threading.Thread(target=start, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while values() < 10 * VARIABLES:
        if time.monotonic() > deadline:
            raise RuntimeError("no OPC UA values came")
        time.sleep(0.05)
    first, cpu = values(), time.process_time()
    time.sleep(OPCUA_S)
    used, got = time.process_time() - cpu, values() - first
    stop.set()
    thread.join(10)
    return used / got


def _accepted(reader: OpcuaReader) -> int:
    return reader.counts.accepted


def _values(counter: _Count) -> int:
    return counter.values


def _opcua(rounds: int) -> dict[str, Any]:
    port = _port()
    with _server(port, _OPCUA_SERVER.replace("{variables}", str(VARIABLES))) as server:
        assert server.stdout is not None
        ids = json.loads(server.stdout.readline())
        url = f"opc.tcp://127.0.0.1:{port}/"
        nodes = [
            {"device": f"m{i // 10}", "channel": f"c{i % 10}", "node_id": node}
            for i, node in enumerate(ids)
        ]
        config = OpcuaSource.model_validate(
            {"type": "opcua", "url": url, "sampling_s": 0.01, "nodes": nodes}
        )
        rows: list[object] = []

        def reference(counter: _Count, stop: threading.Event) -> None:
            async def session() -> None:
                async with Client(url) as client:
                    subscription = await client.create_subscription(10, counter)
                    await subscription.subscribe_data_change([client.get_node(n) for n in ids])
                    while not stop.is_set():
                        await asyncio.sleep(0.2)

            asyncio.run(session())

        ours, theirs = [], []
        for _ in range(rounds):
            reader = OpcuaReader(config, rows.append)
            ours.append(_cpu_per_value(reader.run, partial(_accepted, reader)))
            counter = _Count()
            theirs.append(_cpu_per_value(partial(reference, counter), partial(_values, counter)))
    cpu, reference_cpu = statistics.median(ours), statistics.median(theirs)
    return {
        "variables": VARIABLES,
        "values_per_cpu_s": 1 / cpu,
        "asyncua_values_per_cpu_s": 1 / reference_cpu,
        "ratio_to_asyncua": reference_cpu / cpu,
        "rows": len(rows),
        "rounds": rounds,
    }


def run(rounds: int = 5) -> dict[str, Any]:
    return {"modbus": _modbus(rounds), "opcua": _opcua(rounds)}


def render(result: dict[str, Any]) -> str:
    """The figures, one line each.

    >>> print(render({"modbus": {"slaves": 10, "tags_per_read": 20, "reads_per_cpu_s": 5000.0,
    ...     "values_per_cpu_s": 100000.0, "pymodbus_reads_per_cpu_s": 2500.0,
    ...     "ratio_to_pymodbus": 2.0, "rounds": 5}, "opcua": {"variables": 100,
    ...     "values_per_cpu_s": 20000.0, "asyncua_values_per_cpu_s": 25000.0,
    ...     "ratio_to_asyncua": 0.8, "rows": 9000, "rounds": 5}}))
    Modbus TCP, 10 slaves, one read of 20 float32 tags each (median of 5 rounds)
      5,000 reads per CPU second, 100,000 tag values per CPU second
      pymodbus's client on the same reads: 2,500 per CPU second (edgewatch 2.00x its speed)
    OPC UA, a subscription to 100 variables changing every 10 ms (median of 5 rounds)
      20,000 values per CPU second, made rows
      asyncua's client counting them: 25,000 per CPU second (edgewatch 0.80x its speed)
    """
    m, o = result["modbus"], result["opcua"]
    return "\n".join(
        [
            f"Modbus TCP, {m['slaves']} slaves, one read of {m['tags_per_read']} float32 tags"
            f" each (median of {m['rounds']} rounds)",
            f"  {m['reads_per_cpu_s']:,.0f} reads per CPU second,"
            f" {m['values_per_cpu_s']:,.0f} tag values per CPU second",
            f"  pymodbus's client on the same reads: {m['pymodbus_reads_per_cpu_s']:,.0f} per CPU"
            f" second (edgewatch {m['ratio_to_pymodbus']:.2f}x its speed)",
            f"OPC UA, a subscription to {o['variables']} variables changing every 10 ms"
            f" (median of {o['rounds']} rounds)",
            f"  {o['values_per_cpu_s']:,.0f} values per CPU second, made rows",
            f"  asyncua's client counting them: {o['asyncua_values_per_cpu_s']:,.0f} per CPU"
            f" second (edgewatch {o['ratio_to_asyncua']:.2f}x its speed)",
        ]
    )
