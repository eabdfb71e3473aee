"""The pipeline: blocks in, alerts out, through windows, features, scores and decisions.

Sources ``offer`` decoded blocks to a bounded inbox. One thread takes whatever has arrived (up to
``max_batch`` blocks), cuts each device's windows (waveform) or rows (process, record), computes
the features of all of them in one featurizer call, scores them in one model run, then lets
each device's decider turn its scores into alert transitions for the sinks. Windows that are
ready together are thus featurized and scored together.

The overflow policy lives here. A full inbox makes a source wait up to ``offer_timeout_s`` (a
serial port's kernel buffer or the broker's TCP window absorbs the pause); past that the block is
dropped and counted. Blocks that do not fit the model (channels, sample rate) and windows whose
features cannot be computed are counted by reason, never silently skipped.

A new model is swapped in between two batches: the windows already cut are kept, the
featurizer, scorer and thresholds change at once.
"""

import logging
import queue
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from edgewatch.agent.alerts import Alert, AlertMaker
from edgewatch.agent.bundle import Bundle, BundleError
from edgewatch.agent.config import Decision, ProcessGate, RmsGate
from edgewatch.agent.decision import Decider, Policy
from edgewatch.agent.features import FeatureError, FeatureSpec, Featurizer
from edgewatch.agent.framing import Block
from edgewatch.agent.metrics import Registry
from edgewatch.agent.scorer import Scorer
from edgewatch.agent.sinks.outputs import Sink
from edgewatch.agent.windows import Windower

log = logging.getLogger(__name__)
SCORE_BUCKETS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0)


@dataclass(frozen=True)
class Model:
    """A verified bundle, ready to score: built off the pipeline thread, swapped in whole."""

    bundle: Bundle
    scorer: Scorer
    policy: Policy

    @classmethod
    def load(cls, bundle: Bundle, decision: Decision, threads: int = 1) -> "Model":
        """``bundle`` ready to score and decide on; ``BundleError`` when ``decision``'s gate
        reads a channel that the bundle's input does not have."""
        gate, spec = decision.gate, bundle.manifest.feature_spec
        if isinstance(gate, ProcessGate):
            if spec.kind == "waveform":
                raise BundleError(
                    "decision.gate: a process gate reads a channel of each row, and this model "
                    "takes waveform windows: use an rms gate"
                )
            if gate.channel not in spec.channels:
                raise BundleError(
                    f"decision.gate.channel: {gate.channel!r} is not one of the model's "
                    f"channels ({', '.join(spec.channels)})"
                )
        return cls(bundle, Scorer(bundle, threads), Policy.of(decision, bundle.manifest.thresholds))

    @property
    def spec(self) -> FeatureSpec:
        return self.bundle.manifest.feature_spec

    @property
    def history(self) -> int:
        return self.bundle.manifest.model.history


def same_input(old: FeatureSpec, new: FeatureSpec) -> str | None:
    """Why a model for ``new`` cannot take over the streams of ``old``, or None if it can."""
    for name in ("kind", "channels", "sample_rate", "window", "hop"):
        if getattr(old, name) != getattr(new, name):
            return f"feature_spec.{name} changes from {getattr(old, name)} to {getattr(new, name)}"
    return None


@dataclass
class _Device:
    """One device's streaming state."""

    decider: Decider
    windower: Windower | None = None
    featurizer: Featurizer | None = None
    history: np.ndarray | None = None
    filled: int = 0
    telemetry_at: float = -np.inf
    peak: float = -np.inf


@dataclass
class Round:
    """What one batch of blocks produced, device by device: the windows (or rows) in ``data``
    and their end times, their feature ``rows``, calibrated ``scores``, and the alerts sent."""

    devices: list[str] = field(default_factory=list)
    ends: list[np.ndarray] = field(default_factory=list)
    data: list[np.ndarray] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)


class Pipeline:
    def __init__(
        self,
        model: Model | None,
        decision: Decision,
        alerts: AlertMaker,
        sinks: Sequence[Sink],
        registry: Registry | None = None,
        inbox: int = 4096,
        max_batch: int = 256,
        offer_timeout_s: float = 1.0,
        telemetry_interval_s: float = 10.0,
        record: Callable[[Alert, tuple[str, ...], np.ndarray], None] | None = None,
        max_devices: int = 1000,
    ) -> None:
        """``max_devices``: the devices whose state is kept; after each batch, the least
        recently seen beyond it are forgotten (and counted), so names from the network cannot
        grow memory without a bound."""
        self.decision, self.alerts, self.sinks = decision, alerts, list(sinks)
        self.max_devices = max_devices
        self.max_batch, self.offer_timeout_s = max_batch, offer_timeout_s
        self.telemetry_interval_s = telemetry_interval_s
        self.record = record
        self.capacity = inbox
        self.inbox: queue.SimpleQueue[tuple[Block, float]] = queue.SimpleQueue()
        self.model: Model | None = None
        self._next_model: Model | None = None
        self._devices: OrderedDict[str, _Device] = OrderedDict()
        self.heartbeat = time.monotonic()
        self.dropped: Counter[str] = Counter()
        self._metrics(registry or Registry())
        if model is not None:
            self._use(model)

    def _metrics(self, registry: Registry) -> None:
        self.registry = registry
        self.samples_in = registry.counter("samples_in_total", "Samples received, per channel")
        self.windows_scored = registry.counter("windows_scored_total", "Windows (or rows) scored")
        self.rejected = registry.counter(
            "pipeline_rejected_total", "Blocks and windows the pipeline refused", ("reason",)
        )
        self.alerts_total = registry.counter(
            "alerts_total", "Alert transitions", ("severity", "state")
        )
        self.score_histogram = registry.histogram(
            "score", "Calibrated scores of scored windows", SCORE_BUCKETS
        )
        self.loop_lag = registry.gauge(
            "loop_lag_seconds", "How long the last batch's oldest block waited in the inbox"
        )
        self.model_info = registry.gauge(
            "model_info", "The model in use (value 1)", ("name", "version", "sha256")
        )
        self.evicted = registry.counter(
            "devices_evicted_total", "Devices forgotten, least recently seen, beyond max_devices"
        )

    # -- the sources' side ---------------------------------------------------------------------

    def offer(self, block: Block) -> bool:
        """Queue a block; False (and counted) when it had to be dropped."""
        if self.inbox.qsize() >= self.capacity:
            # Rare, so a poll is enough; the common path stays one C call.
            deadline = time.monotonic() + self.offer_timeout_s
            while self.inbox.qsize() >= self.capacity:
                if time.monotonic() >= deadline:
                    self._drop("inbox_full")
                    return False
                time.sleep(0.001)
        self.inbox.put((block, time.perf_counter()))
        return True

    def put(self, block: Block) -> bool:
        """Queue a block, waiting as long as it takes: for sources that can wait (recordings)."""
        while self.inbox.qsize() >= self.capacity:
            time.sleep(0.001)
        self.inbox.put((block, time.perf_counter()))
        return True

    def swap(self, model: Model) -> None:
        """Use ``model`` from the next batch on."""
        self._next_model = model

    # -- the pipeline thread -------------------------------------------------------------------

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
        batch = Round()
        model = self.model
        if model is None:
            self._drop("no_model", len(blocks))
            return batch
        for block in blocks:
            self._cut(model, block, batch)
        features = self._features(model, batch) if batch.devices else None
        if features is not None:
            self._decide(model, batch, features)
        while len(self._devices) > self.max_devices:
            self._devices.popitem(last=False)
            self.evicted.inc()
        return batch

    def _apply_swap(self) -> None:
        model, self._next_model = self._next_model, None
        if model is not None:
            self._use(model)

    def _use(self, model: Model) -> None:
        old = self.model
        self.model = model
        self.alerts.use(model.bundle)
        self._featurizer = Featurizer(model.spec)
        if old is None or old.history != model.history:
            for device in self._devices.values():
                device.history, device.filled = None, 0
        for device in self._devices.values():
            device.decider.retune(model.policy)
            if device.featurizer is not None:
                device.featurizer = Featurizer(model.spec)
        manifest = model.bundle.manifest
        self.model_info.values.clear()
        self.model_info.set(1, manifest.name, manifest.version, model.bundle.model_sha256)
        log.info("model %s %s in use", manifest.name, manifest.version)

    def _drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] += count
        self.rejected.inc(count, reason)

    def _device(self, model: Model, name: str) -> _Device:
        device = self._devices.get(name)
        if device is not None:
            self._devices.move_to_end(name)
        else:
            spec = model.spec
            device = _Device(Decider(model.policy))
            if spec.kind == "waveform":
                assert spec.window is not None and spec.hop is not None
                device.windower = Windower(spec.window, spec.hop)
            elif spec.kind == "process":
                device.featurizer = Featurizer(spec)
            self._devices[name] = device
        return device

    def _cut(self, model: Model, block: Block, batch: Round) -> None:
        """The block's complete windows (or rows) into the batch."""
        spec = model.spec
        samples = block.samples
        if block.channels and block.channels != spec.channels:
            try:
                samples = samples[[block.channels.index(c) for c in spec.channels]]
            except ValueError:
                self._drop("wrong_channels")
                return
        elif samples.shape[0] != len(spec.channels):
            self._drop("wrong_channels")
            return
        self.samples_in.inc(samples.shape[1])
        device = self._device(model, block.device)
        if device.windower is not None:
            assert spec.sample_rate is not None and spec.window is not None
            if abs(block.sample_rate - spec.sample_rate) > 1e-6 * spec.sample_rate:
                self._drop("wrong_sample_rate")
                return
            starts, windows = device.windower.push(block.ts, block.sample_rate, samples)
            if len(windows):
                batch.devices.append(block.device)
                batch.ends.append(starts + spec.window / spec.sample_rate)
                batch.data.append(windows)
        else:
            rows = np.ascontiguousarray(samples.T)
            batch.devices.append(block.device)
            batch.ends.append(block.ts + np.arange(len(rows)) / block.sample_rate)
            batch.data.append(rows)

    def _features(self, model: Model, batch: Round) -> np.ndarray | None:
        """Feature rows of the whole batch; a part that cannot be featurized is dropped, counted."""
        if model.spec.kind == "waveform":
            try:
                data = batch.data[0] if len(batch.data) == 1 else np.concatenate(batch.data)
                return self._featurizer(data)
            except FeatureError:
                pass
        parts, keep = [], []
        for i, (name, data) in enumerate(zip(batch.devices, batch.data, strict=True)):
            featurizer = self._devices[name].featurizer or self._featurizer
            try:
                parts.append(featurizer(data))
                keep.append(i)
            except FeatureError as e:
                log.warning("%s: %s", name, e)
                self._drop("features", len(data))
        for name in ("devices", "ends", "data"):
            setattr(batch, name, [getattr(batch, name)[i] for i in keep])
        return np.concatenate(parts) if parts else None

    def _inputs(self, model: Model, batch: Round, features: np.ndarray) -> np.ndarray:
        """Model inputs: the rows, or for a sequence model each row with the ones before it.
        A device's first ``history - 1`` rows only fill its history."""
        history = model.history
        if history == 1:
            offset = 0
            for ends in batch.ends:
                batch.rows.append(features[offset : offset + len(ends)])
                offset += len(ends)
            return features
        inputs, offset = [], 0
        for i, name in enumerate(batch.devices):
            rows = features[offset : offset + len(batch.ends[i])]
            offset += len(rows)
            device = self._devices[name]
            if device.history is None:
                device.history = np.zeros((history - 1, features.shape[1]), np.float32)
            joined = np.concatenate([device.history, rows])
            device.history = joined[-(history - 1) :]
            windows = np.lib.stride_tricks.sliding_window_view(joined, history, axis=0)
            windows = np.moveaxis(windows, -1, 1)
            skip = max(0, history - 1 - device.filled)
            device.filled += len(rows)
            inputs.append(windows[skip:])
            batch.ends[i] = batch.ends[i][skip:]
            batch.data[i] = batch.data[i][skip:]
            batch.rows.append(rows[skip:])
        return np.ascontiguousarray(np.concatenate(inputs), np.float32)

    def _idle(self, gate: RmsGate | ProcessGate, spec: FeatureSpec, data: np.ndarray) -> np.ndarray:
        """Per window (or row), whether the machine is idle."""
        if isinstance(gate, RmsGate):
            if data.ndim == 3:
                level = np.sqrt(np.einsum("wcn,wcn->wc", data, data) / data.shape[-1])
            else:
                level = np.abs(data)
            idle: np.ndarray = (level < gate.floor).all(axis=1)
            return idle
        idle = data[:, spec.channels.index(gate.channel)] < gate.minimum
        return idle

    def _decide(self, model: Model, batch: Round, features: np.ndarray) -> None:
        inputs = self._inputs(model, batch, features)
        if not len(inputs):
            batch.scores = [np.empty(0, np.float32) for _ in batch.devices]
            return
        scores = model.scorer(inputs)
        calibrated = scores.calibrated
        self.windows_scored.inc(len(calibrated))
        self.score_histogram.observe_array(calibrated)
        sizes = np.array([len(e) for e in batch.ends])
        starts = np.cumsum(sizes) - sizes
        peaks = np.full(len(sizes), -np.inf)
        some = sizes > 0
        peaks[some] = np.maximum.reduceat(calibrated, starts[some])
        gate = self.decision.gate
        for i, name in enumerate(batch.devices):
            ends = batch.ends[i]
            offset, k = int(starts[i]), int(sizes[i])
            mine = calibrated[offset : offset + k]
            batch.scores.append(mine)
            if not k:
                continue
            device = self._devices[name]
            idle = self._idle(gate, model.spec, batch.data[i]) if gate is not None else None
            peak = float(peaks[i])
            for step in device.decider.steps(ends, mine, idle, peak):
                errors = scores.feature_error
                alert = self.alerts.make(
                    name,
                    step,
                    batch.rows[i][step.index],
                    errors[offset + step.index] if errors is not None else None,
                )
                self.alerts_total.inc(1, alert.severity, alert.state)
                if self.record is not None and step.state == "raised":
                    self.record(
                        alert, model.bundle.manifest.feature_names, batch.rows[i][step.index]
                    )
                for sink in self.sinks:
                    sink.send(alert)
                batch.alerts.append(alert)
            self._telemetry(name, device, float(ends[-1]), peak)

    def _telemetry(self, name: str, device: _Device, ts: float, peak: float) -> None:
        device.peak = max(device.peak, peak)
        if ts - device.telemetry_at < self.telemetry_interval_s:
            return
        record: dict[str, float | int | str] = {"ts": ts, "score_max": device.peak}
        device.telemetry_at, device.peak = ts, -np.inf
        for sink in self.sinks:
            sink.telemetry(name, record)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
