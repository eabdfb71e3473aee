"""The pipeline: blocks in, alerts out, through streams, scorer, decisions and sinks.

Sources ``offer`` decoded blocks to a bounded inbox. One thread takes what has arrived (up to
``max_batch`` blocks) through the stages: ``Streams`` cuts and featurizes each device's windows
(or rows), the model scores them in one run, ``Decisions`` turns scores into alert transitions,
and ``Fanout`` hands the alerts to the sinks.

The overflow policy lives here. A full inbox makes a source wait up to ``offer_timeout_s`` (a
serial port's buffer or the broker's TCP window absorbs the pause); past that the block is
dropped and counted, as is all a stage refuses. A model is swapped in between two batches.
"""

import logging
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from edgewatch.agent.alerts import Alert, AlertMaker
from edgewatch.agent.decision import Decisions
from edgewatch.agent.framing import Block
from edgewatch.agent.metrics import Registry
from edgewatch.agent.model import Model
from edgewatch.agent.sinks.fanout import Fanout
from edgewatch.agent.sinks.outputs import Record, Sink
from edgewatch.agent.streams import Batch, Part, Streams

log = logging.getLogger(__name__)
SCORE_BUCKETS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0)
Recorder = Callable[[Alert, tuple[str, ...], np.ndarray], None]


@dataclass(frozen=True)
class Round:
    """What one batch gave: each device's part, its calibrated scores, and the alerts sent."""

    parts: list[Part] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)


class Pipeline:
    def __init__(
        self,
        model: Model | None,
        alerts: AlertMaker,
        sinks: Sequence[Sink],
        registry: Registry | None = None,
        inbox: int = 4096,
        max_batch: int = 256,
        offer_timeout_s: float = 1.0,
        telemetry_interval_s: float = 10.0,
        record: Recorder | None = None,
        max_devices: int = 1000,
    ) -> None:
        """``max_devices`` caps the devices streamed; ``record`` takes each raised alert's row."""
        self.alerts, self.fanout = alerts, Fanout(sinks, telemetry_interval_s)
        self.max_batch = max_batch
        self.offer_timeout_s, self.record, self.capacity = offer_timeout_s, record, inbox
        self.inbox: queue.SimpleQueue[tuple[Block, float]] = queue.SimpleQueue()
        self.model: Model | None = None
        self._next_model: Model | None = None
        self.heartbeat = time.monotonic()
        self.dropped: Counter[str] = Counter()
        self.registry = registry = registry or Registry()
        self.streams, self.decisions = Streams(registry, max_devices), Decisions()
        self.windows_scored = registry.counter("windows_scored_total", "Windows (or rows) scored")
        self.rejected = registry.counter(
            "pipeline_rejected_total", "Blocks and windows the pipeline refused", ("reason",)
        )
        self.alerts_total = registry.counter(
            "alerts_total", "Alert transitions", ("severity", "state")
        )
        self.scores = registry.histogram(
            "score", "Calibrated scores of scored windows", SCORE_BUCKETS
        )
        self.loop_lag = registry.gauge(
            "loop_lag_seconds", "How long the last batch's oldest block waited in the inbox"
        )
        self.model_info = registry.gauge(
            "model_info", "The model in use (value 1)", ("name", "version", "sha256")
        )
        if model is not None:
            self._use(model)

    def offer(self, block: Block, timeout_s: float | None = None) -> bool:
        """Queue a block, waiting up to ``timeout_s`` (``offer_timeout_s``) while the inbox is
        full; False (and counted) when it had to be dropped."""
        if self.inbox.qsize() >= self.capacity:  # rare: a poll will do, the common path is one call
            wait = self.offer_timeout_s if timeout_s is None else timeout_s
            deadline = time.monotonic() + wait
            while self.inbox.qsize() >= self.capacity:
                if time.monotonic() >= deadline:
                    self._drop("inbox_full")
                    return False
                time.sleep(0.001)
        self.inbox.put((block, time.perf_counter()))
        return True

    def put(self, block: Block) -> bool:
        """Queue a block, waiting as long as it takes: for sources that can wait (recordings)."""
        return self.offer(block, math.inf)

    def swap(self, model: Model) -> None:
        """Use ``model`` from the next batch on."""
        self._next_model = model

    def run(self, stop: threading.Event) -> None:
        """Process blocks until ``stop`` is set and the inbox is empty."""
        while True:
            self.heartbeat = time.monotonic()
            blocks = self.drain(timeout=0.2)
            if blocks:
                self.process(blocks)
            elif stop.is_set():
                return
            else:
                self._apply_swap()

    def drain(self, timeout: float) -> list[Block]:
        """What the inbox holds, up to ``max_batch`` blocks, waiting up to ``timeout`` for one."""
        try:
            first = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                batch.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        self.loop_lag.set(time.perf_counter() - batch[0][1])
        return [block for block, _ in batch]

    def process(self, blocks: Sequence[Block]) -> Round:
        """One batch, start to finish."""
        self._apply_swap()
        if self.model is None:
            self._drop("no_model", len(blocks))
            return Round()
        batch = self.streams.batch(blocks)
        for reason, count in batch.dropped.items():
            self._drop(reason, count)
        done = self._score(self.model, batch)
        for device in batch.forgotten:
            self.decisions.forget(device)
            self.fanout.forget(device)
        return done

    def _score(self, model: Model, batch: Batch) -> Round:
        if batch.inputs is None or batch.rows is None or not len(batch.inputs):
            return Round(batch.parts, [np.empty(0, np.float32) for _ in batch.parts])
        scores = model.scorer(batch.inputs)
        calibrated = scores.calibrated
        self.windows_scored.inc(len(calibrated))
        self.scores.observe_array(calibrated)
        errors, records = scores.feature_error, list[Record]()
        for verdict in self.decisions.decide(batch.parts, calibrated):
            for step in verdict.steps:
                at = verdict.offset + step.index
                row, error = batch.rows[at], None if errors is None else errors[at]
                alert = self.alerts.make(verdict.device, step, row, error)
                self.alerts_total.inc(1, alert.severity, alert.state)
                if self.record is not None and step.state == "raised":
                    self.record(alert, model.bundle.manifest.feature_names, row)
                records.append(alert)
            due = self.fanout.telemetry(verdict.device, verdict.ts, verdict.peak)
            records += [due] if due else []
        if records:
            self.fanout.write(records)
        ends = np.cumsum([len(part.ends) for part in batch.parts])[:-1]
        alerts = [r for r in records if isinstance(r, Alert)]
        return Round(batch.parts, np.split(calibrated, ends), alerts)

    def _apply_swap(self) -> None:
        model, self._next_model = self._next_model, None
        if model is not None:
            self._use(model)

    def _use(self, model: Model) -> None:
        self.model = model
        self.alerts.use(model.bundle)
        self.streams.use(model.spec, model.history)
        self.decisions.retune(model.policy)
        manifest = model.bundle.manifest
        self.model_info.values.clear()
        self.model_info.set(1, manifest.name, manifest.version, model.bundle.model_sha256)
        log.info("model %s %s in use", manifest.name, manifest.version)

    def _drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] += count
        self.rejected.inc(count, reason)

    def close(self) -> None:
        self.fanout.close()
