"""Modbus TCP and RTU: the slaves' tags polled on one schedule, a row per device per poll.

Every ``interval_s`` each slave's reads are sent in turn (``agent.modbus.plan``). A device's row
is offered when every one of its tags was read in that poll, timed at the poll's start;
otherwise it is counted (``row_incomplete``). Everything refused is counted by reason
(``agent.modbus``, and ``timeout``, ``not_finite``, ``link_down``). A slave that times out (or
that its gateway cannot reach) is left out of the polls, from one interval doubling up to
``backoff_max_s``, while the others are polled on. The TCP link reconnects when lost; a serial
port is reopened.
"""

import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np
import serial

from edgewatch.agent.clock import Backoff
from edgewatch.agent.framing import Block, Counts
from edgewatch.agent.modbus import MBAP, ModbusError, Read, plan, rtu_pdu, tcp_pdu, values
from edgewatch.agent.sources import Offer
from edgewatch.agent.sources.settings import ModbusSource, channels_by_device

log = logging.getLogger(__name__)
MAX_FRAME = 260
# What a gateway answers for a slave it cannot reach: backed off like a timeout.
UNREACHABLE = ("exception_gateway_path", "exception_gateway_no_answer")


class Link(Protocol):
    """One request out and its response's PDU back: ``ModbusError`` when it is not one,
    ``TimeoutError`` when none comes, ``OSError`` when the link itself is lost."""

    def exchange(self, read: Read) -> bytes: ...

    def close(self) -> None: ...


class TcpLink:
    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self._socket = socket.create_connection((host, port), timeout=timeout_s)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._transaction = 0

    def exchange(self, read: Read) -> bytes:
        self._transaction = (self._transaction + 1) & 0xFFFF
        self._socket.sendall(read.tcp(self._transaction))
        while True:
            head = self._receive(MBAP.size, quiet=True)
            length = int.from_bytes(head[4:6], "big")
            if not 2 <= length <= MAX_FRAME:
                raise OSError(f"an MBAP length of {length}: the stream is out of step")
            frame = head + self._receive(length - 1, quiet=False)
            if int.from_bytes(frame[:2], "big") == self._transaction:
                return tcp_pdu(read, self._transaction, frame)
            # The late answer to a request that timed out: the one asked for follows it.

    def _receive(self, n: int, quiet: bool) -> bytes:
        """``n`` bytes; ``TimeoutError`` if none come and ``quiet`` allows that, else a lost
        link: a frame cut short leaves the stream out of step."""
        data = b""
        while len(data) < n:
            try:
                chunk = self._socket.recv(n - len(data))
            except TimeoutError:
                if quiet and not data:
                    raise
                raise ConnectionResetError("a frame cut short by the timeout") from None
            if not chunk:
                raise ConnectionResetError("the server closed the connection")
            data += chunk
        return data

    def close(self) -> None:
        self._socket.close()


class RtuLink:
    def __init__(self, config: ModbusSource) -> None:
        assert config.serial is not None
        self._port = serial.Serial(
            config.serial,
            config.baudrate,
            parity=config.parity,
            stopbits=config.stopbits,
            timeout=config.timeout_s,
        )
        # The silence that ends a frame: 3.5 characters of 11 bits, at least 1.75 ms.
        self._gap_s = max(3.5 * 11 / config.baudrate, 0.00175)

    def exchange(self, read: Read) -> bytes:
        time.sleep(self._gap_s)
        self._port.reset_input_buffer()
        self._port.write(read.rtu())
        head = self._port.read(3)
        if len(head) < 3:
            raise TimeoutError
        rest = 2 if head[1] & 0x80 else head[2] + 2
        frame = head + self._port.read(rest)
        if len(frame) < 3 + rest:
            raise TimeoutError
        return rtu_pdu(read, frame)

    def close(self) -> None:
        self._port.close()


class ModbusReader:
    def __init__(
        self, config: ModbusSource, offer: Offer, clock: Callable[[], float] = time.time
    ) -> None:
        self.config, self.offer, self.clock = config, offer, clock
        self.reads = plan(config.tags)
        self.counts = Counts()
        self.connected = False
        self._slaves = {
            read.slave: Backoff(config.backoff_max_s, config.interval_s) for read in self.reads
        }
        self._rows = list(channels_by_device(config.tags).items())
        self._down_until: dict[int, float] = {}

    def run(self, stop: threading.Event) -> None:
        backoff = Backoff(self.config.backoff_max_s)
        while not stop.is_set():
            try:
                link = self._open()
            except (OSError, serial.SerialException) as e:
                self.counts.rejected["link_down"] += 1
                log.warning("modbus %s: cannot open (%s)", self._where, e)
                backoff.wait(stop)
                continue
            self.connected, answered = True, self.counts.accepted
            try:
                self._poll_until(stop, link)
            except (OSError, serial.SerialException) as e:
                self.counts.rejected["link_down"] += 1
                log.warning("modbus %s: lost (%s)", self._where, e)
            finally:
                self.connected = False
                link.close()
            if self.counts.accepted > answered:  # a link that held; else back off further
                backoff.reset()
            backoff.wait(stop)

    @property
    def _where(self) -> str:
        config = self.config
        if config.transport == "tcp":
            return f"tcp://{config.host}:{config.port}"
        return f"rtu:{config.serial}"

    def _open(self) -> Link:
        config = self.config
        if config.transport == "tcp":
            assert config.host is not None
            return TcpLink(config.host, config.port, config.timeout_s)
        return RtuLink(config)

    def _poll_until(self, stop: threading.Event, link: Link) -> None:
        interval = self.config.interval_s
        due = time.monotonic()
        while not stop.is_set():
            self.poll(link)
            due += interval
            late = time.monotonic() - due
            if late > 0:  # a poll that overran skips the polls it missed
                due += math.ceil(late / interval) * interval
            stop.wait(due - time.monotonic())

    def poll(self, link: Link) -> None:
        """One round over every slave, and a row for each device whose tags were all read."""
        ts, now = self.clock(), time.monotonic()
        row: dict[tuple[str, str], float] = {}
        for read in self.reads:
            if self._down_until.get(read.slave, 0.0) > now:
                continue
            try:
                numbers = values(read, link.exchange(read))
            except ModbusError as e:
                self.counts.rejected[e.reason] += 1
                if e.reason in UNREACHABLE:
                    self._down(read.slave, now)
                continue
            except TimeoutError:
                self.counts.rejected["timeout"] += 1
                self._down(read.slave, now)
                continue
            self.counts.accepted += 1
            self._up(read.slave)
            for tag, number in zip(read.tags, numbers, strict=True):
                if math.isfinite(number):
                    row[tag.device, tag.channel] = number
                else:
                    self.counts.rejected["not_finite"] += 1
        self._offer(ts, row)

    def _down(self, slave: int, now: float) -> None:
        if slave not in self._down_until:
            log.warning("modbus %s: slave %d does not answer", self._where, slave)
        self._down_until[slave] = now + self._slaves[slave].next()

    def _up(self, slave: int) -> None:
        if self._down_until.pop(slave, None) is not None:
            log.info("modbus %s: slave %d answers again", self._where, slave)
            self._slaves[slave].reset()

    def _offer(self, ts: float, read: dict[tuple[str, str], float]) -> None:
        rate = 1.0 / self.config.interval_s
        for device, channels in self._rows:
            row = [read.get((device, channel)) for channel in channels]
            if any(v is None for v in row):
                self.counts.rejected["row_incomplete"] += 1
                continue
            samples = np.array(row, np.float64).reshape(-1, 1)
            self.offer(Block(device, ts, rate, samples, channels))
