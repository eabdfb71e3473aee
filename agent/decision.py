"""Decisions: calibrated scores of one device, window by window, into an alert's lifecycle.

A model scores; this policy decides. Per device:

- **warm-up**: the first ``warmup`` windows of a running machine decide nothing;
- **gating**: windows of an idle machine are skipped, and an open alert is cleared;
- **N-of-M**: a window is *high* when its score is above ``warning``; an alert is wanted once
  ``n`` of the last ``m`` windows are high;
- **minimum duration**: and only once that has held for ``min_duration_s``, dated from the first
  window of the run;
- **cooldown**: no new alert within ``cooldown_s`` of the last one clearing;
- **hysteresis**: an open alert stays while ``n`` of the last ``m`` windows are above
  ``warning - hysteresis``, and clears when they are not;
- **release**: with ``release > 0``, an open alert also clears once its score has fallen back to
  ``release`` of its run's peak height above that low mark: the excursion is over, even if the
  machine has settled a little away from its old normal. Until a window is at or below
  ``warning`` again, a new alert needs scores above the level it was released at;
- **severity**: ``critical`` above the critical threshold; a warning that crosses it while open
  is escalated under the same ``alert_id``.

With ``n = m = 1``, no hysteresis, no release and no cooldown, the windows an alert covers are
exactly the runs of high windows that last ``min_duration_s``.
"""

import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

State = Literal["raised", "escalated", "cleared"]
Severity = Literal["warning", "critical"]


@dataclass(frozen=True)
class RmsFloor:
    """Idle while every channel's level is below ``floor``: the RMS of a window, the absolute
    value of a row."""

    floor: float

    def idle(self, data: np.ndarray) -> np.ndarray:
        """Per window ``[n, channels, samples]`` (or row ``[n, channels]``), whether idle."""
        if data.ndim == 3:
            level = np.sqrt(np.einsum("wcn,wcn->wc", data, data) / data.shape[-1])
        else:
            level = np.abs(data)
        idle: np.ndarray = (level < self.floor).all(axis=1)
        return idle


@dataclass(frozen=True)
class ChannelFloor:
    """Idle while column ``index`` of a row is below ``minimum``."""

    index: int
    minimum: float

    def idle(self, data: np.ndarray) -> np.ndarray:
        idle: np.ndarray = data[:, self.index] < self.minimum
        return idle


Gate = RmsFloor | ChannelFloor


@dataclass(frozen=True)
class Policy:
    warning: float
    critical: float
    warmup: int = 0
    n: int = 1
    m: int = 1
    hysteresis: float = 0.0
    min_duration_s: float = 0.0
    cooldown_s: float = 0.0
    release: float = 0.0
    gate: Gate | None = None


@dataclass(frozen=True)
class Transition:
    """A step in an alert's life: ``ts`` is the window that caused it, ``started_at`` the first
    window of the run that raised it; ``index`` is that window's position in the batch."""

    state: State
    alert_id: str
    severity: Severity
    started_at: float
    ts: float
    score: float
    threshold: float
    index: int
    reason: str = ""


def _new_id() -> str:
    return uuid.uuid4().hex


class Decider:
    """The decision state of one device."""

    def __init__(self, policy: Policy, new_id: Callable[[], str] = _new_id) -> None:
        self.policy = policy
        self._new_id = new_id
        self.seen = 0
        self._high: deque[bool] = deque(maxlen=policy.m)
        self._held: deque[bool] = deque(maxlen=policy.m)
        self._run_start: float | None = None
        self._peak = -np.inf
        self._rearm: float | None = None
        self._quiet_until = -np.inf
        self._alert: Transition | None = None

    def retune(self, policy: Policy) -> None:
        """Take a new policy (a new model's thresholds) and keep the history."""
        if policy.m != self.policy.m:
            self._high = deque(self._high, maxlen=policy.m)
            self._held = deque(self._held, maxlen=policy.m)
        self.policy = policy

    def steps(
        self,
        ts: np.ndarray,
        scores: np.ndarray,
        idle: np.ndarray | None = None,
        peak: float | None = None,
    ) -> list[Transition]:
        """Decide windows in order; returns the transitions they caused. ``peak``, the largest
        of ``scores``, may be given when the caller has it already."""
        p = self.policy
        if peak is None:
            peak = float(scores.max(initial=-np.inf))
        if (
            idle is None
            and self._alert is None
            and self.seen >= p.warmup
            and peak <= p.warning - p.hysteresis
            and (len(scores) >= p.m or not any(self._high))
        ):
            # The usual case: a running, healthy machine.
            k = len(scores)
            self.seen += k
            self._high.extend([False] * min(k, p.m))
            self._held.extend([False] * min(k, p.m))
            self._run_start = None
            if k:
                self._rearm = None
            return []
        out = []
        for i in range(len(scores)):
            step = self.step(
                float(ts[i]), float(scores[i]), bool(idle[i]) if idle is not None else False, i
            )
            if step is not None:
                out.append(step)
        return out

    def step(
        self, ts: float, score: float, idle: bool = False, index: int = 0
    ) -> Transition | None:
        p = self.policy
        if idle:
            self._run_start = None
            self._rearm = None
            self._high.clear()
            self._held.clear()
            if self._alert is not None:
                return self._clear(ts, score, index, "idle", p.warning - p.hysteresis)
            return None
        self.seen += 1
        if self.seen <= p.warmup:
            return None
        if score <= p.warning:
            self._rearm = None
        self._high.append(score > (p.warning if self._rearm is None else self._rearm))
        self._held.append(score > p.warning - p.hysteresis)
        if self._alert is not None:
            return self._while_open(self._alert, ts, score, index)
        if sum(self._high) < p.n:
            self._run_start = None
            return None
        if self._run_start is None:
            self._run_start = ts
            self._peak = score
        self._peak = max(self._peak, score)
        if ts - self._run_start < p.min_duration_s or ts < self._quiet_until:
            return None
        critical = score > p.critical
        self._alert = Transition(
            "raised",
            self._new_id(),
            "critical" if critical else "warning",
            self._run_start,
            ts,
            score,
            p.critical if critical else p.warning,
            index,
        )
        return self._alert

    def _while_open(
        self, alert: Transition, ts: float, score: float, index: int
    ) -> Transition | None:
        p = self.policy
        self._peak = max(self._peak, score)
        low = p.warning - p.hysteresis
        if sum(self._held) < p.n:
            return self._clear(ts, score, index, "below threshold", low)
        released = low + p.release * (self._peak - low)
        if p.release and score <= released:
            self._rearm = released
            return self._clear(ts, score, index, "released", released)
        if alert.severity == "warning" and score > p.critical:
            self._alert = Transition(
                "escalated",
                alert.alert_id,
                "critical",
                alert.started_at,
                ts,
                score,
                p.critical,
                index,
            )
            return self._alert
        return None

    def _clear(
        self, ts: float, score: float, index: int, reason: str, threshold: float
    ) -> Transition:
        alert = self._alert
        assert alert is not None
        self._alert = None
        self._run_start = None
        self._quiet_until = ts + self.policy.cooldown_s
        return Transition(
            "cleared",
            alert.alert_id,
            alert.severity,
            alert.started_at,
            ts,
            score,
            threshold,
            index,
            reason,
        )


class Windows(Protocol):
    """What the decisions read of one device's share of a batch: the end time of each window
    (or row) and its data, which the gate reads."""

    @property
    def device(self) -> str: ...

    @property
    def ends(self) -> np.ndarray: ...

    @property
    def data(self) -> np.ndarray: ...


@dataclass(frozen=True)
class Verdict:
    """What one device's windows in a batch decided: its transitions, where its scores start in
    the batch's, the time of its last window and the peak of its scores."""

    device: str
    offset: int
    steps: list[Transition]
    ts: float
    peak: float


class Decisions:
    """The decision stage: every device's decider, fed the scorer's output batch by batch.

    A batch's calibrated scores come in device by device, in the order of its ``parts``; each
    device's windows are gated on machine state, then decided in order. A window without a
    score (NaN: a regime its model never saw, ``agent.regimes``) counts as idle. Devices are
    added as they first come, and dropped with ``forget``.
    """

    def __init__(self, new_id: Callable[[], str] = _new_id) -> None:
        self.policy: Policy | None = None
        self._new_id = new_id
        self._deciders: dict[str, Decider] = {}

    def retune(self, policy: Policy) -> None:
        """A model's policy for every device, each keeping its history."""
        self.policy = policy
        for decider in self._deciders.values():
            decider.retune(policy)

    def forget(self, device: str) -> None:
        self._deciders.pop(device, None)

    def open_since(self, device: str) -> float | None:
        """When the first window of ``device``'s open alert came; None with no open alert."""
        decider = self._deciders.get(device)
        alert = decider._alert if decider is not None else None
        return alert.started_at if alert is not None else None

    def decide(self, parts: Sequence[Windows], calibrated: np.ndarray) -> list[Verdict]:
        """The verdict of each part that has windows."""
        policy = self.policy
        assert policy is not None, "retune() to a policy first"
        sizes = np.array([len(p.ends) for p in parts], dtype=np.intp)
        starts = np.cumsum(sizes) - sizes
        peaks = np.full(len(sizes), -np.inf)
        some = sizes > 0
        unscored = bool(np.isnan(calibrated).any())
        if some.any():
            peaks[some] = np.fmax.reduceat(calibrated, starts[some])
        if unscored:
            peaks[np.isnan(peaks)] = -np.inf  # every window of an unknown regime
        gate = policy.gate
        verdicts = []
        for part, start, size, peak in zip(parts, starts, sizes, peaks, strict=True):
            if not size:
                continue
            decider = self._deciders.get(part.device)
            if decider is None:
                decider = self._deciders[part.device] = Decider(policy, self._new_id)
            idle = gate.idle(part.data) if gate is not None else None
            mine = calibrated[start : start + size]
            if unscored and (unknown := np.isnan(mine)).any():
                idle = unknown if idle is None else idle | unknown
            steps = decider.steps(part.ends, mine, idle, float(peak))
            verdicts.append(
                Verdict(part.device, int(start), steps, float(part.ends[-1]), float(peak))
            )
        return verdicts
