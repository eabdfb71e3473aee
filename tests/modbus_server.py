"""A real Modbus server (pymodbus) for the tests: TCP, or RTU on a serial port, on a thread of
its own, serving registers the test sets, with faults the test injects.

Each slave has 100 holding and 100 input registers and 100 coils and discrete inputs, at
addresses 0-99; reading registers beyond them is an illegal address. ``set`` changes what a
slave holds; ``dead`` slaves get no answer; while ``busy`` holds a slave, it answers exception
6; ``corrupt`` flips the CRC of that many RTU answers to come.
"""

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

SIZE = 100
TABLES = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}


@dataclass
class Faults:
    dead: set[int] = field(default_factory=set)
    busy: set[int] = field(default_factory=set)
    corrupt: int = 0
    answered: int = 0


class Slaves:
    """The slaves' tables: ``tables[slave][name][address]``, read by the server at each
    request."""

    def __init__(self, slaves: tuple[int, ...]) -> None:
        self.tables = {s: {name: [0] * SIZE for name in TABLES.values()} for s in slaves}
        self.faults = Faults()

    def set(self, slave: int, table: str, address: int, words: list[int]) -> None:
        self.tables[slave][table][address : address + len(words)] = words

    def devices(self) -> list[SimDevice]:
        # One shared block, bit-addressed: the action fills it with the table asked for.
        block = [SimData(0, count=SIZE, values=0, datatype=DataType.REGISTERS)]
        return [
            SimDevice(id=s, simdata=block, use_bit_addressing=True, action=self._action(s))
            for s in self.tables
        ]

    def _action(self, slave: int):  # type: ignore[no-untyped-def]
        async def action(function, start, address, count, registers, values):  # type: ignore[no-untyped-def]
            if slave in self.faults.busy:
                return ExcCodes.DEVICE_BUSY
            table = self.tables[slave][TABLES[function]]
            if function in (1, 2):
                table = [
                    sum(bool(b) << i for i, b in enumerate(table[16 * r : 16 * r + 16]))
                    for r in range(SIZE)
                ]
            registers[:] = table[start : start + len(registers)]
            return None

        return action

    def trace(self, sending: bool, packet: bytes, *, unit_at: int, crc: bool) -> bytes:
        """The answers as the faults make them: none from a dead slave, a CRC flipped."""
        if not sending or not packet:
            return packet
        if packet[unit_at] in self.faults.dead:
            return b""
        self.faults.answered += 1
        if crc and self.faults.corrupt > 0:
            self.faults.corrupt -= 1
            return packet[:-1] + bytes([packet[-1] ^ 0xFF])
        return packet


@contextmanager
def serving(
    slaves: Slaves, *, port: int | None = None, serial: str | None = None
) -> Iterator[None]:
    """A Modbus TCP server on ``port`` of loopback, or RTU on the ``serial`` port, while in the
    block."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    servers: list[ModbusSerialServer | ModbusTcpServer] = []

    async def run() -> None:
        if serial is not None:
            server: ModbusSerialServer | ModbusTcpServer = ModbusSerialServer(
                slaves.devices(),
                framer=FramerType.RTU,
                port=serial,
                baudrate=19200,
                parity="N",
                trace_packet=partial(slaves.trace, unit_at=0, crc=True),
            )
        else:
            server = ModbusTcpServer(
                slaves.devices(),
                address=("127.0.0.1", port or 0),
                trace_packet=partial(slaves.trace, unit_at=6, crc=False),
            )
        servers.append(server)
        await server.serve_forever(background=True)
        ready.set()
        await server.serving

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the Modbus server did not start"
    try:
        yield
    finally:
        asyncio.run_coroutine_threadsafe(servers[0].shutdown(), loop).result(10)
        thread.join(10)
