"""Drift: a machine's scores leaving its calibration slowly and for long, told apart from a fault.

Under its model's calibration, a normal window scores above level ``L`` with probability
``p0 = 10**-L``. For each device the watch runs a Bernoulli CUSUM on the windows above the
watch ``level`` (1: one normal window in ten): each window adds ``log(p1 / p0)`` when above it
and ``log((1 - p1) / (1 - p0))`` when not, where ``p1 = ratio * p0`` is the raised rate it is
built to notice; the sum is held at 0 from below, and drift is signalled when it reaches ``h``.
``h`` comes from the run length between false signals the config asks for (``run_length``
windows taken on normal running), by Siegmund's approximation ``ARL0 = (e^h - h - 1) /
|E0[step]|``, which leaves out the overshoot and so errs towards longer runs. The watch takes
one window in as many as its features span (``independent``), and at most one every
``spacing_s`` of the device's own time, so that a run length in windows is one in time: a
vibration sensor streaming 25 windows a second and a pump sending a row a second both give it at
most a window every ``spacing_s``.

A fault drives the scores over the warning level within a few windows and raises an alert. The
windows above the warning level are the alerts' business, and the watch skips them: it counts
only the band between its level and the warning, where a slow, lasting move shows first and
which the alerts' decision settings let through. At the defaults the sum needs dozens of windows
of a raised rate to reach ``h``; a fault never feeds it. A signal
is reported once, as its own event, with the evidence: the features whose mean over the windows
since the sum last stood at 0 moved furthest from the model's training rows, in standard
deviations. The machine keeps its model and keeps alerting; the watch starts again only when
its lane gets a new model (``reset``).
"""

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edgewatch.agent.bundle import Manifest
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.model import Model
from edgewatch.agent.streams import Part

TOP_FEATURES = 5


def threshold(p0: float, p1: float, run_length: float) -> float:
    """The CUSUM limit ``h`` whose run length between false signals is ``run_length``.

    >>> round(threshold(0.1, 0.3, 1e6), 2)
    11.66
    """
    drift = p0 * math.log(p1 / p0) + (1 - p0) * math.log((1 - p1) / (1 - p0))
    low, high = 0.0, 200.0
    for _ in range(100):
        h = (low + high) / 2
        if (math.exp(h) - h - 1) / -drift < run_length:
            low = h
        else:
            high = h
    return high


def independent(spec: FeatureSpec) -> int:
    """How many windows apart two of ``spec``'s windows share no data: the watch takes one
    window in so many, so its sum counts independent evidence (a process row's rolling
    statistics span ``history`` rows, a waveform's windows overlap by ``window - hop``).

    >>> independent(FeatureSpec(kind="process", channels=["t"]))
    30
    """
    if spec.kind == "process" and spec.history is not None:
        return spec.history
    if spec.kind == "waveform" and spec.window is not None and spec.hop is not None:
        return max(1, -(-spec.window // spec.hop))
    return 1


@dataclass
class _Watch:
    total: float = 0.0
    since: int = 0
    above: int = 0
    sums: np.ndarray | None = None
    signalled: bool = False
    seen: int = 0
    next_ts: float = -math.inf


@dataclass(frozen=True)
class Drift:
    """A drift signal: the device, when, how long the sum built up (or the shift lasted), and
    which features moved; ``adapted`` when the machine re-learned it unattended."""

    device: str
    ts: float
    windows: int
    rate: float
    features: list[dict[str, float | str]] = field(default_factory=list)
    adapted: bool = False

    def event(self) -> dict[str, object]:
        return {
            "event": "drift",
            "device": self.device,
            "ts": self.ts,
            "windows": self.windows,
            "rate_above_level": round(self.rate, 4),
            "features": self.features,
            "adapted": self.adapted,
        }


class DriftWatch:
    """Every device's CUSUM, for ``max_devices`` of them at most."""

    def __init__(
        self,
        level: float = 1.0,
        ratio: float = 3.0,
        run_length: float = 1e6,
        max_devices: int = 1000,
        spacing_s: float = 0.0,
    ) -> None:
        """``run_length``: in windows taken; a window is taken at most every ``spacing_s`` of
        its device's time."""
        self.level, self.max_devices, self.spacing_s = level, max_devices, spacing_s
        self.p0 = 10.0**-level
        p1 = min(ratio * self.p0, 0.99)
        self.up, self.down = math.log(p1 / self.p0), math.log((1 - p1) / (1 - self.p0))
        self.h = threshold(self.p0, p1, run_length)
        self._watches: OrderedDict[str, _Watch] = OrderedDict()

    def watch(
        self,
        device: str,
        ends: np.ndarray,
        calibrated: np.ndarray,
        rows: np.ndarray,
        manifest: Manifest,
        warning: float,
        stride: int = 1,
    ) -> Drift | None:
        """A device's windows in time order: their end times, calibrated scores and feature
        rows, and the warning level its alerts use; the drift signal when the sum reaches
        ``h`` (once)."""
        state = self._watches.get(device)
        if state is None:
            state = self._watches[device] = _Watch()
            while len(self._watches) > self.max_devices:
                self._watches.popitem(last=False)
        else:
            self._watches.move_to_end(device)
        if state.signalled:
            return None
        first = -state.seen % stride
        state.seen += len(calibrated)
        taken = calibrated[first::stride]
        if state.total == 0.0 and (not len(taken) or taken.max() <= self.level):
            return None  # the usual case: nothing above the level, nothing summed
        for i in range(first, len(calibrated), stride):
            score = float(calibrated[i])
            if not score <= warning or ends[i] < state.next_ts:  # above, or NaN: no regime
                continue
            state.next_ts = float(ends[i]) + self.spacing_s
            above = score > self.level
            state.total = max(0.0, state.total + (self.up if above else self.down))
            if state.total == 0.0:
                state.since, state.above, state.sums = 0, 0, None
                continue
            state.since += 1
            state.above += above
            row = rows[i].astype(np.float64)
            state.sums = row if state.sums is None else state.sums + row
            if state.total >= self.h:
                state.signalled = True
                rate = state.above / state.since
                evidence = self._evidence(state, manifest)
                return Drift(device, float(ends[i]), state.since, rate, evidence)
        return None

    def batch(
        self, parts: Sequence[Part], scores: Sequence[np.ndarray], model: Model
    ) -> list[Drift]:
        """The signals of one lane's batch: each device's part, its calibrated scores, and the
        lane's model."""
        manifest = model.bundle.manifest
        stride = independent(manifest.feature_spec)
        warning = model.policy.warning
        found = [
            self.watch(part.device, part.ends, mine, part.rows, manifest, warning, stride)
            for part, mine in zip(parts, scores, strict=True)
        ]
        return [signal for signal in found if signal is not None]

    def reset(self, devices: list[str] | None = None) -> None:
        """Watch afresh: every device, or ``devices`` (their lane has a new model)."""
        for device in list(self._watches) if devices is None else devices:
            self._watches.pop(device, None)

    def drifted(self) -> list[str]:
        """The devices that signalled; safe from another thread (a copy, taken whole)."""
        return [d for d, w in list(self._watches.items()) if w.signalled]

    def _evidence(self, state: _Watch, manifest: Manifest) -> list[dict[str, float | str]]:
        if state.sums is None or not state.since:
            return []
        return evidence(manifest, state.sums / state.since)


def evidence(manifest: Manifest, mean: np.ndarray) -> list[dict[str, float | str]]:
    """The features of rows with the ``mean`` row that moved furthest from the model's
    training rows, in standard deviations."""
    stats = manifest.feature_stats
    if stats is None:
        return []
    shift = (mean - np.array(stats.mean)) / np.array(stats.std)
    top = np.argsort(-np.abs(shift), kind="stable")[:TOP_FEATURES]
    return [{"name": manifest.feature_names[i], "shift_sd": round(float(shift[i]), 3)} for i in top]
