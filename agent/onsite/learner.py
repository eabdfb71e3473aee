"""The learning stage: devices without a bundle learn their normal on the gateway.

The pipeline hands it the blocks of every device whose machine learns on site and that has not
learned yet. Each machine's feature spec cuts and featurizes them (``agent.streams``); the rows
the machine-state gate calls idle are left out; the rest grow the device's ``Baseline``. A
complete baseline goes to the fitting thread, which learns it (``agent.onsite.learn``), writes
the bundle under the device's folder and installs the model: the device scores from its next
block. A device that has learned before resumes from its bundle on disk, and one that was
learning resumes its baseline.

``rebaseline`` starts a new baseline of a device that has learned: it keeps scoring with its
model while the pipeline hands its blocks here too, and the model learned from the new baseline
takes over. A file ``relearning`` in the device's folder carries that across a restart. What
changes a model after it is learned (labels, unattended adaptation) is ``agent.onsite.tuner``'s,
on this learner's fitting thread.

Bundles learned here are the agent's own: it loads them from its ``learning_dir`` unsigned,
whatever the public key, as it loads its spool.
"""

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np

from edgewatch.agent.bundle import BundleError, verify_bundle
from edgewatch.agent.calibration import CalibrationError
from edgewatch.agent.config import Machine
from edgewatch.agent.framing import Block
from edgewatch.agent.machines import Route
from edgewatch.agent.metrics import Registry
from edgewatch.agent.model import Model, gate
from edgewatch.agent.onsite import folders, labelled
from edgewatch.agent.onsite.baseline import Baseline, discard
from edgewatch.agent.onsite.folders import BUNDLE, RELEARNING, folder_name
from edgewatch.agent.onsite.learn import LearningError, learn
from edgewatch.agent.parity import ParityError
from edgewatch.agent.streams import StreamMetrics, Streams

log = logging.getLogger(__name__)
SAVE_EVERY_S = 30.0
# A learned device stays until the pipeline swaps its model in (``hand_over``).
State = Literal["learning", "fitting", "learned"]


@dataclass
class _Device:
    machine: Machine
    baseline: Baseline
    state: State = "learning"
    saved_at: float = 0.0
    primed: int = 0


class Learner:
    def __init__(
        self,
        folder: Path,
        metrics: StreamMetrics,
        install: Callable[[Route, Model], None],
        report: Callable[[dict[str, object]], None],
        threads: int = 1,
        max_devices: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        inline: bool = False,
        shadowed: bool = False,
    ) -> None:
        """``inline``: fit a complete baseline at once, on the caller's thread (a replay's),
        instead of on the fitting thread. ``shadowed``: a device's new model, re-fitted or
        relearned, goes on trial (``install`` puts it there) and becomes its bundle only if
        promoted (``settled``)."""
        self.folder, self.metrics, self.threads = folder, metrics, threads
        self.inline = inline
        self.install, self.report, self.clock = install, report, clock
        self.max_devices, self.shadowed = max_devices, shadowed
        self._streams: dict[str, Streams] = {}
        self._devices: dict[str, _Device] = {}
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.fits: Counter[str] = Counter()

    def resume(self, route: Route) -> Model | None:
        """The model a device learned before, when its bundle is on disk and loads; None for
        a device this learner knows (learning, fitting, or learned and about to be swapped
        in)."""
        assert route.machine is not None
        if route.device in self._devices:
            return None
        path = self.folder / folder_name(route.device) / BUNDLE
        if not path.exists():
            return None
        try:
            model = Model.load(verify_bundle(path), route.machine.decision, self.threads)
        except BundleError as e:
            log.error("%s: the learned bundle does not load, learning again: %s", route.device, e)
            return None
        folders.abandon(path.parent)
        if (path.parent / RELEARNING).exists():
            self._device(route)
        return model

    def collecting(self, device: str) -> bool:
        """Whether ``device``'s blocks grow a baseline (its first, or a new one)."""
        found = self._devices.get(device)
        return found is not None and found.state == "learning"

    def add(self, route: Route, blocks: Sequence[Block]) -> Counter[str]:
        """Blocks of a learning device; what they could not give, by reason."""
        machine = route.machine
        assert machine is not None and machine.features is not None and machine.learn
        device = self._device(route)
        if device.state != "learning":
            return Counter({"learning": len(blocks)})
        streams = self._streams.get(machine.name)
        if streams is None:
            streams = self._streams[machine.name] = Streams(self.metrics, self.max_devices)
            streams.use(machine.features, 1)
        batch = streams.batch(blocks)
        idle = gate(machine.decision.gate, machine.features)
        for part in batch.parts:
            keep = np.arange(device.primed, device.primed + len(part.ends)) >= self._priming(
                machine
            )
            device.primed += len(part.ends)
            if idle is not None:
                keep &= ~idle.idle(part.data)
            device.baseline.add(part.ends[keep], part.rows[keep])
        now = self.clock()
        complete = device.baseline.complete
        if complete or now - device.saved_at >= SAVE_EVERY_S:
            self._save(route.device, device, now)
        if complete:
            with self.lock:
                device.state = "fitting"
            self.submit(partial(self.fit, route, device.baseline.matrix().copy()))
        return batch.dropped

    def rebaseline(self, route: Route) -> None:
        """Start ``route``'s device on a new baseline; its model, if it has one, scores on."""
        folder = self.folder / folder_name(route.device)
        discard(folder)
        labelled.clear(folder)
        try:
            if (folder / BUNDLE).exists():
                (folder / RELEARNING).touch()
        except OSError as e:
            log.error("%s: cannot mark the relearning: %s", route.device, e)
        device = self._device(route)
        with self.lock:
            device.state = "learning"
        device.baseline.clear()
        device.primed = 0
        log.info("%s: a new baseline begins", route.device)

    def hand_over(self, route: Route, to: Streams) -> None:
        """Give a device whose learned model is now in use its streaming state, to score on
        with, and let go of it; one that is collecting a new baseline keeps both."""
        assert route.machine is not None
        if self.collecting(route.device):
            return
        streams = self._streams.get(route.machine.name)
        if streams is not None:
            streams.hand_over(route.device, to)
        self.forget(route.device)

    def forget(self, device: str) -> None:
        """Let go of a device's baseline in memory (it stays on disk)."""
        with self.lock:
            self._devices.pop(device, None)
        for streams in self._streams.values():
            streams.forget(device)

    def save(self) -> None:
        """Write every baseline in progress: what the agent does as it stops."""
        with self.lock:
            devices = list(self._devices.items())
        for name, device in devices:
            if device.state == "learning":
                self._save(name, device, self.clock())

    def states(self) -> dict[str, dict[str, object]]:
        """Each learning device's state and progress, for ``/healthz``."""
        with self.lock:
            return {
                name: {
                    "machine": d.machine.name,
                    "state": d.state,
                    "rows": d.baseline.count,
                    "progress": round(d.baseline.progress, 3),
                }
                for name, d in self._devices.items()
            }

    def export_metrics(self, registry: Registry) -> None:
        def read(field: str) -> Callable[[], dict[tuple[str, ...], float]]:
            def values() -> dict[tuple[str, ...], float]:
                return {(n,): float(s[field]) for n, s in self.states().items()}  # type: ignore[arg-type]

            return values

        registry.collect(
            "gauge", "learning_rows", "Baseline rows collected", ("device",), read("rows")
        )
        registry.collect(
            "gauge",
            "learning_progress",
            "How far each baseline is, 0 to 1",
            ("device",),
            read("progress"),
        )
        registry.collect(
            "counter",
            "learning_fits_total",
            "On-site fits, by result",
            ("result",),
            lambda: {(k,): float(v) for k, v in self.fits.items()},
        )

    def run(self, stop: threading.Event) -> None:
        """The fitting thread: each job as it comes (a complete baseline to learn, the tuner's
        labels and re-fits)."""
        while not stop.is_set():
            try:
                job = self._jobs.get(timeout=0.5)
            except queue.Empty:
                continue
            job()

    def fit(self, route: Route, rows: np.ndarray) -> None:
        machine = route.machine
        assert machine is not None and machine.learn is not None and machine.features
        began = time.perf_counter()
        folder = self.folder / folder_name(route.device)
        try:
            learned = learn(rows, machine.features, machine.learn, name=route.device)
            model = folders.candidate(folder, learned, machine.decision, self.threads)
            folders.place(folder, model, self.shadowed)
        except (LearningError, CalibrationError, ParityError, BundleError, OSError) as e:
            self.fits["failed"] += 1
            log.error("%s: learning failed, collecting a new baseline: %s", route.device, e)
            self.report({"event": "learning_failed", "device": route.device, "error": str(e)})
            self._restart(route.device)
            return
        self.fits["ok"] += 1
        thresholds = learned.manifest.thresholds
        with self.lock:
            device = self._devices.get(route.device)
            # A rebaseline that came while fitting keeps its device learning.
            if device is not None and device.state == "fitting":
                device.state = "learned"
                (folder / RELEARNING).unlink(missing_ok=True)
        self.install(route, model)
        log.info("%s learned its normal from %d rows", route.device, len(rows))
        self.report(
            {
                "event": "learned",
                "device": route.device,
                "machine": machine.name,
                "rows": len(rows),
                "fit_s": round(time.perf_counter() - began, 3),
                "warning": thresholds.warning,
                "expected_warning_far": thresholds.expected_warning_far,
                "notes": list(learned.notes),
            }
        )

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the fitting thread (or at once, ``inline``)."""
        if self.inline:
            job()
        else:
            self._jobs.put(job)

    def adopt(self, route: Route, model: Model) -> None:
        """Put a device's new model, written to its candidate folder and checked, in place of
        its bundle (or on trial beside it) and in use; ``OSError`` when the disk refuses."""
        folders.place(self.folder / folder_name(route.device), model, self.shadowed)
        self.install(route, model)

    @staticmethod
    def _priming(machine: Machine) -> int:
        """How many rows of a device's stream only fill its rolling statistics: they are not
        yet the statistics of its normal, and stay out of its baseline."""
        spec = machine.features
        if spec is None or spec.kind != "process" or spec.history is None:
            return 0
        return spec.history

    def _device(self, route: Route) -> _Device:
        device = self._devices.get(route.device)
        if device is None:
            machine = route.machine
            assert machine is not None and machine.learn and machine.features
            baseline = Baseline(
                self.folder / folder_name(route.device), machine.features, machine.learn
            )
            device = _Device(machine, baseline, saved_at=self.clock())
            with self.lock:
                self._devices[route.device] = device
            self.report(
                {
                    "event": "learning",
                    "device": route.device,
                    "machine": machine.name,
                    "rows": baseline.count,
                    "min_rows": machine.learn.min_rows,
                    "duration_s": machine.learn.duration_s,
                }
            )
        return device

    def _save(self, name: str, device: _Device, now: float) -> None:
        device.saved_at = now
        try:
            device.baseline.save()
        except OSError as e:
            log.error("%s: the baseline cannot be saved: %s", name, e)

    def _restart(self, name: str) -> None:
        with self.lock:
            device = self._devices.get(name)
            if device is None:
                return
            device.state = "learning"
        device.baseline.clear()
