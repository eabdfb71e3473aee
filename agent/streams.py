"""Streams: each device's blocks into the windows (or rows) a model scores, with their feature
rows and model inputs.

Per device it keeps the streaming state: the windower of a waveform machine, the rolling
featurizer of a process machine, and the last rows a sequence model reads before each new one.
A waveform machine with a speed channel scores only the windows whose speed is known and within
its range; the rest are dropped, counted by reason (``no_speed``, ``speed_out_of_range``).
``batch`` turns the blocks of one pipeline turn into a ``Batch``: one ``Part`` per block that
gave windows, the model inputs of all of them in one array, and the reasons anything was
dropped. Windows of the waveform devices are featurized together, in one featurizer call.
"""

import logging
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edgewatch.agent.features import FeatureError, FeatureSpec
from edgewatch.agent.featurizer import Featurizer, in_range, shaft_speeds
from edgewatch.agent.framing import Block
from edgewatch.agent.metrics import Counter as MetricCounter
from edgewatch.agent.metrics import Registry
from edgewatch.agent.model import sequences
from edgewatch.agent.windows import Windower

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Part:
    """One device's share of a batch: the windows (or rows) in ``data``, their end times, and
    their feature rows. A sequence model's inputs for a device start once it has ``history``
    rows: the first rows only fill its history, and are not in its part."""

    device: str
    ends: np.ndarray
    data: np.ndarray
    rows: np.ndarray


@dataclass
class Batch:
    """What one turn's blocks gave: the parts, the model inputs of all of them in order (and
    the feature row each input ends with), what was dropped (by reason, counted in windows or
    blocks) and the devices forgotten to stay within the cap."""

    parts: list[Part] = field(default_factory=list)
    inputs: np.ndarray | None = None
    rows: np.ndarray | None = None
    dropped: Counter[str] = field(default_factory=Counter)
    forgotten: list[str] = field(default_factory=list)


@dataclass
class _Device:
    windower: Windower | None = None
    featurizer: Featurizer | None = None
    history: np.ndarray | None = None
    filled: int = 0


@dataclass
class _Cut:
    device: str
    ends: np.ndarray
    data: np.ndarray


@dataclass(frozen=True)
class StreamMetrics:
    """The counters every ``Streams`` of an agent adds to."""

    samples_in: MetricCounter
    evicted: MetricCounter

    @classmethod
    def of(cls, registry: Registry) -> "StreamMetrics":
        return cls(
            registry.counter("samples_in_total", "Samples received, per channel"),
            registry.counter(
                "devices_evicted_total",
                "Devices forgotten, least recently seen, beyond max_devices",
            ),
        )


class Streams:
    """Every device's streaming state for one feature spec, at most ``max_devices`` of them:
    beyond it, the least recently seen are forgotten, so names from the network cannot grow
    memory without a bound."""

    def __init__(self, metrics: StreamMetrics, max_devices: int = 1000) -> None:
        self.max_devices = max_devices
        self._devices: OrderedDict[str, _Device] = OrderedDict()
        self.spec: FeatureSpec | None = None
        self.history = 1
        self.samples_in, self.evicted = metrics.samples_in, metrics.evicted

    def forget(self, device: str) -> None:
        self._devices.pop(device, None)

    def hand_over(self, device: str, to: "Streams") -> None:
        """Give ``device``'s streaming state (its windower or its rolling statistics) to
        ``to``, which reads the same spec: a device that has learned scores on from where its
        baseline stopped, with no rolling state to build up again."""
        state = self._devices.pop(device, None)
        if state is not None and to.spec == self.spec:
            to._devices[device] = state

    def use(self, spec: FeatureSpec, history: int) -> None:
        """A model's spec and history. A new model takes over the windows being cut (its input
        is the same, ``agent.model.same_input``); the rows kept for a sequence model are
        dropped if the history changes."""
        if history != self.history:
            for device in self._devices.values():
                device.history, device.filled = None, 0
        self.spec, self.history = spec, history
        self._featurizer = Featurizer(spec)
        for device in self._devices.values():
            if device.featurizer is not None:
                device.featurizer = Featurizer(spec)

    def batch(self, blocks: Sequence[Block]) -> Batch:
        assert self.spec is not None, "use() a spec first"
        batch = Batch()
        cuts = [cut for b in blocks if (cut := self._cut(self.spec, b, batch)) is not None]
        features = self._features(self.spec, cuts, batch) if cuts else None
        if features is not None:
            self._stack(cuts, features, batch)
        while len(self._devices) > self.max_devices:
            batch.forgotten.append(self._devices.popitem(last=False)[0])
            self.evicted.inc()
        return batch

    def _device(self, spec: FeatureSpec, name: str) -> _Device:
        device = self._devices.get(name)
        if device is not None:
            self._devices.move_to_end(name)
            return device
        device = self._devices[name] = _Device()
        if spec.kind == "waveform":
            assert spec.window is not None and spec.hop is not None
            device.windower = Windower(spec.window, spec.hop)
        elif spec.kind == "process":
            device.featurizer = Featurizer(spec)
        return device

    def _cut(self, spec: FeatureSpec, block: Block, batch: Batch) -> _Cut | None:
        """The block's complete windows (or rows)."""
        samples = block.samples
        if block.channels and block.channels != spec.channels:
            try:
                samples = samples[[block.channels.index(c) for c in spec.channels]]
            except ValueError:
                batch.dropped["wrong_channels"] += 1
                return None
        elif samples.shape[0] != len(spec.channels):
            batch.dropped["wrong_channels"] += 1
            return None
        self.samples_in.inc(samples.shape[1])
        device = self._device(spec, block.device)
        if device.windower is None:
            if not samples.shape[1]:
                return None
            ends = block.ts + np.arange(samples.shape[1]) / block.sample_rate
            return _Cut(block.device, ends, np.ascontiguousarray(samples.T))
        assert spec.sample_rate is not None and spec.window is not None
        if abs(block.sample_rate - spec.sample_rate) > 1e-6 * spec.sample_rate:
            batch.dropped["wrong_sample_rate"] += 1
            return None
        starts, windows = device.windower.push(block.ts, block.sample_rate, samples)
        if spec.speed is not None and len(windows):
            speeds = shaft_speeds(spec, windows)
            ok = in_range(spec, speeds)
            unknown = int(np.isnan(speeds).sum())
            batch.dropped["no_speed"] += unknown
            batch.dropped["speed_out_of_range"] += int((~ok).sum()) - unknown
            starts, windows = starts[ok], windows[ok]
        if not len(windows):
            return None
        return _Cut(block.device, starts + spec.window / spec.sample_rate, windows)

    def _features(self, spec: FeatureSpec, cuts: list[_Cut], batch: Batch) -> np.ndarray | None:
        """Feature rows of all cuts; a cut that cannot be featurized is dropped, counted, and
        taken out of ``cuts``."""
        if spec.kind == "waveform":
            try:
                data = cuts[0].data if len(cuts) == 1 else np.concatenate([c.data for c in cuts])
                return self._featurizer(data)
            except FeatureError:
                pass
        parts, kept = [], []
        for cut in cuts:
            featurizer = self._devices[cut.device].featurizer or self._featurizer
            try:
                parts.append(featurizer(cut.data))
                kept.append(cut)
            except FeatureError as e:
                log.warning("%s: %s", cut.device, e)
                batch.dropped["features"] += len(cut.data)
        cuts[:] = kept
        return np.concatenate(parts) if parts else None

    def _stack(self, cuts: list[_Cut], features: np.ndarray, batch: Batch) -> None:
        """The parts and model inputs: the rows, or for a sequence model each row with the ones
        before it."""
        offset, inputs = 0, []
        for cut in cuts:
            rows = features[offset : offset + len(cut.ends)]
            offset += len(rows)
            if self.history == 1:
                batch.parts.append(Part(cut.device, cut.ends, cut.data, rows))
                continue
            stacked, skip = self._with_history(self._devices[cut.device], rows)
            inputs.append(stacked)
            batch.parts.append(Part(cut.device, cut.ends[skip:], cut.data[skip:], rows[skip:]))
        if self.history == 1:
            batch.inputs = batch.rows = features
        else:
            batch.inputs = np.concatenate(inputs, dtype=np.float32)
            batch.rows = np.concatenate([part.rows for part in batch.parts])

    def _with_history(self, device: _Device, rows: np.ndarray) -> tuple[np.ndarray, int]:
        """``rows`` stacked after the device's kept rows, and how many of them only fill its
        history."""
        history = self.history
        if device.history is None:
            device.history = np.zeros((history - 1, rows.shape[1]), np.float32)
        joined = np.concatenate([device.history, rows])
        device.history = joined[-(history - 1) :]
        skip = max(0, history - 1 - device.filled)
        device.filled += len(rows)
        return sequences(joined, history)[skip:], skip
