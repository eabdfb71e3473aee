"""The pipeline: blocks in, alerts out, through streams, scorer, decisions and sinks.

Sources ``offer`` decoded blocks to a bounded inbox. One thread takes what has arrived (up to
``max_batch`` blocks) through the stages. The router (``agent.machines``) sends each device's
blocks to its lane, or to the learner while it learns on site. In each lane, ``Streams`` cuts
and featurizes the windows (or rows), its model scores them in one run, and ``Decisions`` turns
scores into alert transitions; ``Fanout`` hands the alerts of the whole batch to the sinks.

The overflow policy lives here. A full inbox makes a source wait up to ``offer_timeout_s`` (a
serial port's buffer or the broker's TCP window absorbs the pause); past that the block is
dropped and counted, as is all a stage refuses. A model is swapped into its lane between two
batches.
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

from edgewatch.agent.alert_windows import AlertWindows, Keeper
from edgewatch.agent.alerts import Alert, AlertMaker
from edgewatch.agent.drift import DriftWatch
from edgewatch.agent.feedback import Labelled
from edgewatch.agent.framing import Block
from edgewatch.agent.machines import DEFAULT, Lane, Route, Router, device_of
from edgewatch.agent.metrics import Registry
from edgewatch.agent.model import Model
from edgewatch.agent.onsite.learner import Learner
from edgewatch.agent.onsite.tuner import Tuner
from edgewatch.agent.pipeline_metrics import PipelineMetrics
from edgewatch.agent.regimes import Unknown
from edgewatch.agent.scorer import Scores
from edgewatch.agent.shadow import Trials
from edgewatch.agent.sinks.fanout import Fanout
from edgewatch.agent.sinks.outputs import Record, Sink
from edgewatch.agent.speed_tags import SpeedTags
from edgewatch.agent.streams import Batch, Part, StreamMetrics

log = logging.getLogger(__name__)
MAX_LABELS = 1000


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
        keeper: Keeper | None = None,
        max_devices: int = 1000,
        router: Router | None = None,
    ) -> None:
        """``model`` scores the devices of the default route; ``router`` (default: every
        device to it) routes the others. ``max_devices`` caps the devices streamed;
        ``keeper`` keeps the rows of each open alert's windows (``agent.alert_windows``)."""
        self.alerts, self.fanout = alerts, Fanout(sinks, telemetry_interval_s)
        self.max_batch, self.max_devices = max_batch, max_devices
        self.offer_timeout_s, self.capacity = offer_timeout_s, inbox
        self.windows = AlertWindows(keeper) if keeper is not None else None
        self.inbox: queue.SimpleQueue[tuple[Block, float]] = queue.SimpleQueue()
        self.router = router or Router((), True, max_devices)
        self.learner: Learner | None = None
        self.tuner: Tuner | None = None
        # Given each batch's outcome, its scores: what `replay --scores` prints.
        self.on_round: Callable[[Round], None] | None = None
        self.drift: DriftWatch | None = None
        # The machines that take their speed from a process tag (``agent.speed_tags``).
        self.speeds: SpeedTags | None = None
        # Where events for the status topic go: drift signals.
        self.report: Callable[[dict[str, object]], None] = lambda event: None
        self.lanes: dict[str, Lane] = {}
        self._swaps: dict[str, Model] = {}
        self._candidates: dict[str, Model] = {}
        self._verdicts: dict[str, bool] = {}
        self._labels: list[Labelled] = []
        self.trials = Trials(lambda event: self.report(event))
        self._swap_lock = threading.Lock()
        self.heartbeat = time.monotonic()
        self.dropped: Counter[str] = Counter()
        self.registry = registry = registry or Registry()
        self.stream_metrics = StreamMetrics.of(registry)
        self.trials.export_metrics(registry)
        self.unknown = Unknown(registry)
        self.scored_by_device: Counter[str] = Counter()
        self.metrics = PipelineMetrics.of(registry, self)
        if model is not None:
            self._use(DEFAULT, model)

    @property
    def model(self) -> Model | None:
        """The default model."""
        return self.model_of(DEFAULT)

    def model_of(self, key: str) -> Model | None:
        lane = self.lanes.get(key)
        return lane.model if lane is not None else None

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

    def swap(self, model: Model, key: str = DEFAULT) -> None:
        """Score lane ``key`` with ``model`` from the next batch on; any thread may call it."""
        with self._swap_lock:
            self._swaps[key] = model

    def try_out(self, model: Model, key: str = DEFAULT) -> None:
        """Try ``model`` in the shadow of lane ``key``'s model from the next batch on (in use
        at once if the lane has none); any thread may call it."""
        with self._swap_lock:
            self._candidates[key] = model

    def decide(self, key: str, promote: bool) -> None:
        """Promote or retire lane ``key``'s candidate, from the next batch on; any thread."""
        with self._swap_lock:
            self._verdicts[key] = promote

    def tell(self, given: Labelled) -> None:
        """An operator's label, for the device's learner from the next batch on; any thread
        may call it."""
        with self._swap_lock:
            if len(self._labels) < MAX_LABELS:
                self._labels.append(given)
                return
        self._drop("labels_full")

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
                self._apply_swaps()

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
        self.metrics.loop_lag.set(time.perf_counter() - batch[0][1])
        return [block for block, _ in batch]

    def process(self, blocks: Sequence[Block]) -> Round:
        """One batch, start to finish."""
        self._apply_swaps()
        lanes: dict[str, list[Block]] = {}
        learning: dict[str, tuple[Route, list[Block]]] = {}
        for given in blocks:
            route = self.router.route(given.device)
            block = given if self.speeds is None else self.speeds(given, route)
            if route is not None and route.key not in self.lanes and route.learns:
                self._resume(route)
            scored = route is not None and route.key in self.lanes
            if route is not None and scored:
                lanes.setdefault(route.key, []).append(block)
            if route is not None and route.learns and self.learner is not None:
                if not scored or self.learner.collecting(route.device):
                    learning.setdefault(route.device, (route, []))[1].append(block)
            elif not scored:
                self._drop("no_model")
        for route, mine in learning.values():
            assert self.learner is not None
            dropped = self.learner.add(route, mine)
            if route.key not in self.lanes:  # else its lane counts the same blocks
                for reason, count in dropped.items():
                    self._drop(reason, count)
        done, records = Round(), list[Record]()
        for key, mine in lanes.items():
            self._lane(key, mine, done, records)
        if records:
            self.fanout.write(records)
        for route in self.router.evicted():
            self._forget(route)
        if self.on_round is not None:
            self.on_round(done)
        return done

    def _lane(self, key: str, blocks: list[Block], done: Round, records: list[Record]) -> None:
        lane = self.lanes[key]
        batch = lane.streams.batch(blocks)
        for reason, count in batch.dropped.items():
            self._drop(reason, count)
        for device in batch.forgotten:
            lane.decisions.forget(device)
            self.fanout.forget(device)
            if self.windows is not None:
                self.windows.forget(device)
        if batch.inputs is None or batch.rows is None or not len(batch.inputs):
            done.parts.extend(batch.parts)
            done.scores.extend(np.empty(0, np.float32) for _ in batch.parts)
            return
        model = lane.model
        scores = model.scorer(batch.inputs)
        calibrated = scores.calibrated
        self.metrics.windows_scored.inc(len(calibrated))
        for part in batch.parts:
            self.scored_by_device[part.device] += len(part.ends)
        ends = np.cumsum([len(part.ends) for part in batch.parts])[:-1]
        split = np.split(calibrated, ends)
        if model.bundle.manifest.regimes is not None:
            self._regimes(batch.parts, split, model.spec.history or 0)
            self.metrics.scores.observe_array(calibrated[np.isfinite(calibrated)])
        else:
            self.metrics.scores.observe_array(calibrated)
        raised = self._decide(lane, batch, scores, done, records)
        done.parts.extend(batch.parts)
        done.scores.extend(split)
        if self.tuner is not None and self.tuner.adapts:
            self._follow(self.tuner, lane, split, batch.parts)
        for found in self.drift.batch(batch.parts, split, model) if self.drift else ():
            self.metrics.drift_events.inc()
            log.warning("%s: drift (%d windows)", found.device, found.windows)
            self.report(found.event())
        chosen = self.trials.score(key, batch.parts, batch.inputs, model, calibrated, raised)
        if chosen is not None:
            self._use(key, chosen)

    def _decide(
        self, lane: Lane, batch: Batch, scores: Scores, done: Round, records: list[Record]
    ) -> int:
        """The lane's decisions on a scored batch: its alerts, their windows kept and its
        telemetry; how many alerts it raised."""
        assert batch.rows is not None
        model, errors, raised = lane.model, scores.feature_error, 0
        for verdict in lane.decisions.decide(batch.parts, scores.calibrated):
            made = []
            for step in verdict.steps:
                at = verdict.offset + step.index
                row, error = batch.rows[at], None if errors is None else errors[at]
                made.append(self.alerts.make(verdict.device, step, model.bundle, row, error))
                self.metrics.alerts_total.inc(1, made[-1].severity, made[-1].state)
            if self.windows is not None and (made or self.windows.open(verdict.device)):
                names = model.bundle.manifest.feature_names
                indices = [step.index for step in verdict.steps]
                rows = next(p.rows for p in batch.parts if p.device == verdict.device)
                self.windows.take(verdict.device, made, indices, rows, names)
            raised += sum(alert.state == "raised" for alert in made)
            records += made
            done.alerts.extend(made)
            due = self.fanout.telemetry(verdict.device, verdict.ts, verdict.peak)
            records += [due] if due else []
        return raised

    def _regimes(self, parts: list[Part], scores: list[np.ndarray], history: int) -> None:
        """Unscore the windows of regimes a lane's model never saw, and say which devices
        entered one."""
        for part, mine in zip(parts, scores, strict=True):
            if (since := self.unknown.mask(part.device, part.ends, mine, history)) is not None:
                self.report({"event": "unknown_regime", "device": part.device, "ts": since})

    def _follow(
        self, tuner: Tuner, lane: Lane, scores: list[np.ndarray], parts: list[Part]
    ) -> None:
        """Hand an adapting device's scored windows to the tuner."""
        for part, mine in zip(parts, scores, strict=True):
            route = self.router.route(part.device)
            if route is not None and route.machine is not None and route.machine.adapt:
                since = lane.decisions.open_since(part.device)
                tuner.follow(route, part, mine, lane.model, since)

    def _resume(self, route: Route) -> None:
        """A learning device seen for the first time: its learned model, if it has one."""
        if self.learner is None:
            return
        model = self.learner.resume(route)
        if model is not None:
            self._use(route.key, model)

    def _forget(self, route: Route) -> None:
        self.scored_by_device.pop(route.device, None)
        self.unknown.forget(route.device)
        if self.windows is not None:
            self.windows.forget(route.device)
        self.fanout.forget(route.device)
        if route.learns:
            self.lanes.pop(route.key, None)
            if self.learner is not None:
                self.learner.forget(route.device)
            if self.tuner is not None:
                self.tuner.forget(route.device)
        elif (lane := self.lanes.get(route.key)) is not None:
            lane.forget(route.device)

    def _apply_swaps(self) -> None:
        with self._swap_lock:
            swaps, self._swaps = self._swaps, {}
            candidates, self._candidates = self._candidates, {}
            verdicts, self._verdicts = self._verdicts, {}
            labels, self._labels = self._labels, []
        for key, model in swaps.items():
            self.trials.drop(key, "the model in use was replaced")
            self._use(key, model)
        for key, model in candidates.items():
            lane = self.lanes.get(key)
            if lane is None:
                self._use(key, model)
            else:
                self.trials.start(key, lane.model, model)
        for key, promote in verdicts.items():
            if (chosen := self.trials.decide(key, promote)) is not None:
                self._use(key, chosen)
        for given in labels:
            self._label(given)

    def _label(self, given: Labelled) -> None:
        route = self.router.claim(given.device)
        lane = self.lanes.get(route.key) if route is not None else None
        if route is not None and lane is not None and given.rows is not None:
            self.trials.label(route.key, given.label, given.rows, lane.model)
        if route is not None and route.learns and self.learner is not None:
            if given.label == "rebaseline":
                self.learner.rebaseline(route)
            elif self.tuner is not None:
                self.tuner.label(route, given)
        elif given.label == "rebaseline":
            why = "it learns nothing on site: its model is a shipped bundle, or none"
            log.warning("%s: rebaseline refused: %s", given.device, why)
            self.report({"event": "rebaseline_refused", "device": given.device, "reason": why})

    def _use(self, key: str, model: Model) -> None:
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = Lane(model, self.stream_metrics, self.max_devices)
        else:
            lane.use(model)
            if self.drift is not None:
                self.drift.reset([r.device for r in self.router.routes() if r.key == key])
        device = device_of(key)
        if device is not None and self.learner is not None:
            route = self.router.route(device)
            if route is not None and route.key == key:
                self.learner.hand_over(route, lane.streams)
        manifest = model.bundle.manifest
        log.info("%s: model %s %s in use", key, manifest.name, manifest.version)

    def _drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] += count
        self.metrics.rejected.inc(count, reason)

    def close(self) -> None:
        self.fanout.close()
