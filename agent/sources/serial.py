"""A serial port: binary frames or CSV lines, read as they come, reopened when the port goes.

Binary frames carry their own time and sample rate. CSV lines carry only values: each row is
dated from the configured sample rate, counting from when the first row arrived after the port
opened, and re-dated from the clock when that count falls more than ``RESYNC_S`` behind or ahead
(the device paused or sped up); the windower then restarts instead of stitching.
"""

import logging
import threading
import time
from collections.abc import Callable

import serial

from edgewatch.agent.clock import Backoff
from edgewatch.agent.framing import Block, CsvLineDecoder, FrameDecoder
from edgewatch.agent.sources import Offer
from edgewatch.agent.sources.settings import SerialSource

log = logging.getLogger(__name__)
RESYNC_S = 1.0
READ_TIMEOUT_S = 0.05


class SerialReader:
    def __init__(
        self, config: SerialSource, offer: Offer, clock: Callable[[], float] = time.time
    ) -> None:
        self.config, self.offer, self.clock = config, offer, clock
        self.decoder = (
            FrameDecoder() if config.format == "binary" else CsvLineDecoder(len(config.channels))
        )
        self.counts = self.decoder.counts
        self.opens = 0
        self.connected = False
        self._first: float | None = None
        self._rows = 0

    def run(self, stop: threading.Event) -> None:
        backoff = Backoff(self.config.reconnect_max_s)
        while not stop.is_set():
            try:
                port = serial.Serial(self.config.port, self.config.baudrate, timeout=READ_TIMEOUT_S)
            except (serial.SerialException, OSError) as e:
                log.warning(
                    "%s: cannot open (%s); retrying in %.1f s", self.config.port, e, backoff.delay_s
                )
                backoff.wait(stop)
                continue
            backoff.reset()
            self.connected, self._first = True, None
            self.opens += 1
            log.info("%s: open", self.config.port)
            try:
                while not stop.is_set():
                    data = port.read(max(1, port.in_waiting))
                    if data:
                        self.feed(data)
            except (serial.SerialException, OSError) as e:
                log.warning("%s: lost (%s)", self.config.port, e)
            finally:
                self.connected = False
                port.close()

    def feed(self, data: bytes) -> None:
        """Decode bytes from the port and offer the blocks they complete."""
        config = self.config
        channels = config.channels
        if isinstance(self.decoder, FrameDecoder):
            for block in self.decoder.feed(data):
                names = channels if block.samples.shape[0] == len(channels) else ()
                self.offer(
                    Block(
                        config.device,
                        block.ts,
                        block.sample_rate,
                        block.samples,
                        names,
                        block.sequence,
                    )
                )
            return
        rows = self.decoder.feed(data)
        if not len(rows):
            return
        now = self.clock()
        expected = (self._first or 0.0) + (self._rows + len(rows)) / config.sample_rate
        if self._first is None or abs(now - expected) > RESYNC_S:
            self._first, self._rows = now - len(rows) / config.sample_rate, 0
        ts = self._first + self._rows / config.sample_rate
        self._rows += len(rows)
        self.offer(Block(config.device, ts, config.sample_rate, rows.T.copy(), channels))
