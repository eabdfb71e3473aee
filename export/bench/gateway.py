"""``edgewatch bench gateway``: one simulated gateway with ten machines of three kinds, each
learning its own normal, then a simulated day with a fault on every machine.

Four fans and three blowers (a faster shaft, a louder gear stage) carry vibration sensors that
send a one-second burst every minute, as battery and bandwidth budgets make them do; three pumps
send process rows at 1 Hz. One pipeline routes them (``agent.machines``); every machine learns
on site with the default settings (a baseline of at least 1000 rows over an hour of running),
then scores the rest of the day with the default decision settings. Each machine gets one fault
after it has learned. Reported: the faults detected (an alert raised within their span), the
false alerts (raised outside every fault's span and its ``GRACE_S`` after), per machine-day, and
the drift watch's signals, those before a machine's fault being false ones.
"""

import tempfile
from pathlib import Path
from typing import Any

from edgewatch.agent.alerts import Alert, AlertMaker
from edgewatch.agent.config import validate
from edgewatch.agent.decision_settings import DriftSettings
from edgewatch.agent.drift import DriftWatch
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.framing import Block
from edgewatch.agent.machines import Router
from edgewatch.agent.onsite.learner import Learner
from edgewatch.agent.pipeline import Pipeline
from edgewatch.agent.sinks.outputs import Record, Sink
from edgewatch.sim.machine import (
    PROCESS_CHANNELS,
    Fault,
    Machine,
    simulate_process,
    simulate_waveform,
)

RATE = 25600.0
DAY_S = 86_400
BURST_EVERY_S = 60
GRACE_S = 600.0
WAVEFORM = FeatureSpec(kind="waveform", sample_rate=RATE, window=1024, channels=["x", "y", "z"])
PROCESS = FeatureSpec(kind="process", channels=PROCESS_CHANNELS)
BLOWER = Machine(shaft_hz=49.5, gear_teeth=31, gear_amplitude=0.3)
KINDS = {"fan": Machine(), "blower": BLOWER}
VIBRATION_FAULTS = ("outer_race", "imbalance", "inner_race", "misalignment")


class _Raised(Sink):
    def __init__(self) -> None:
        super().__init__()
        self.raised: list[Alert] = []

    def _write(self, records: list[Record]) -> None:
        self.raised += [r for r in records if isinstance(r, Alert) and r.state == "raised"]


def machines(folder: Path, learn: dict[str, Any] | None = None) -> Pipeline:
    """A pipeline whose fans, blowers and pumps (``fan-*``, ``blower-*``, ``pump-*``) learn on
    site as ``learn`` says (by default, the default settings), each fitted as soon as its
    baseline is complete."""
    learn = learn or {}
    entries = [
        {"name": name, "devices": [f"{name}-*"], "learn": learn, "features": spec.model_dump()}
        for name, spec in (("fan", WAVEFORM), ("blower", WAVEFORM), ("pump", PROCESS))
    ]
    config = validate(
        {
            "site": "bench",
            "device": "gw",
            "sources": [{"type": "mqtt", "topic": "s/#"}],
            "sinks": [{"type": "stdout"}],
            "mqtt": {},
            "machines": entries,
            "learning_dir": str(folder),
        }
    )
    pipe = Pipeline(None, AlertMaker("bench"), [], router=Router(config.machines, False, 100))
    pipe.learner = Learner(
        folder, pipe.stream_metrics, lambda r, m: pipe.swap(m, r.key), lambda e: None, inline=True
    )
    d = DriftSettings()
    pipe.drift = DriftWatch(d.level, d.ratio, d.run_length, spacing_s=d.spacing_s)
    return pipe


def watched(folder: Path) -> tuple[Pipeline, _Raised, list[dict[str, object]]]:
    """``machines``, with the alerts they raise and the events they report kept."""
    pipe, raised, events = machines(folder), _Raised(), list[dict[str, object]]()
    pipe.fanout.sinks.append(raised)
    pipe.report = events.append
    return pipe, raised, events


def _faults(seconds: float) -> dict[str, Fault]:
    """One fault per machine, from the fourth hour on, spread over the day."""
    devices = [*(f"fan-{i}" for i in range(4)), *(f"blower-{i}" for i in range(3))]
    faults = {}
    for i, device in enumerate([*devices, *(f"pump-{i}" for i in range(3))]):
        start = 4 * 3600 + i * (seconds - 5 * 3600) / 10
        kind = VIBRATION_FAULTS[i % 4] if i < 7 else "step"
        faults[device] = Fault(kind=kind, start=start, end=start + 1800, severity=3)  # type: ignore[arg-type]
    return faults


def run(seconds: float = DAY_S, seed: int = 0) -> dict[str, Any]:
    faults = _faults(seconds)
    minutes = int(seconds // BURST_EVERY_S)
    pumps = {
        f"pump-{i}": simulate_process(seconds, seed + 50 + i, [faults[f"pump-{i}"]]).signal
        for i in range(3)
    }
    with tempfile.TemporaryDirectory() as folder:
        pipe, raised, drifts = watched(Path(folder))
        for minute in range(minutes):
            t0 = minute * BURST_EVERY_S
            blocks = []
            for device, fault in faults.items():
                if device.startswith("pump"):
                    rows = pumps[device][:, t0 : t0 + BURST_EVERY_S]
                    blocks += [Block(device, t0 + s, 1.0, rows[:, s : s + 10], PROCESS_CHANNELS)
                               for s in range(0, rows.shape[1], 10)]  # fmt: skip
                    continue
                burst = (Fault(kind=fault.kind, start=0, end=1, severity=fault.severity),)
                during = fault.start <= t0 < fault.end
                machine = KINDS[device.split("-")[0]]
                noise = seed * 7919 + minute * 31 + sum(map(ord, device))
                made = simulate_waveform(machine, 1.0, RATE, noise, burst if during else ())
                blocks += [Block(device, t0 + s / RATE, RATE, made.signal[:, s : s + 2560])
                           for s in range(0, made.signal.shape[1], 2560)]  # fmt: skip
            pipe.process(blocks)
        learned = len([k for k in pipe.lanes if k.startswith("device:")])
    drifted = [(str(e["device"]), float(e["ts"])) for e in drifts]  # type: ignore[arg-type]
    return _outcome(faults, raised.raised, learned, seconds) | _drift(faults, drifted, seconds)


def _drift(
    faults: dict[str, Fault], drifted: list[tuple[str, float]], seconds: float
) -> dict[str, Any]:
    """Drift signals before each machine's fault: false ones, as the faults are steep."""
    before = [d for d, ts in drifted if ts < faults[d].start]
    return {
        "drift_events": len(drifted),
        "false_drift_per_machine_day": len(before) / len(faults) / (seconds / DAY_S),
    }


def _outcome(
    faults: dict[str, Fault], raised: list[Alert], learned: int, seconds: float
) -> dict[str, Any]:
    detected, false = {}, {}
    for device, fault in faults.items():
        mine = [a.started_at.timestamp() for a in raised if a.device == device]
        detected[device] = any(fault.start <= t <= fault.end for t in mine)
        false[device] = sum(not fault.start <= t <= fault.end + GRACE_S for t in mine)
    days = seconds / DAY_S
    return {
        "machines": len(faults),
        "learned": learned,
        "faults_detected": sum(detected.values()),
        "missed": sorted(d for d, ok in detected.items() if not ok),
        "false_alerts_per_machine_day": {d: n / days for d, n in false.items()},
        "worst_false_alerts_per_day": max(false.values()) / days,
    }


def render(result: dict[str, Any]) -> str:
    false = result["false_alerts_per_machine_day"]
    return "\n".join(
        [
            f"{result['machines']} machines, {result['learned']} learned on site; faults "
            f"detected: {result['faults_detected']} of {result['machines']}"
            + (f" (missed: {', '.join(result['missed'])})" if result["missed"] else ""),
            "false alerts per machine-day: "
            + ", ".join(f"{d} {n:.1f}" for d, n in false.items())
            + f"; worst {result['worst_false_alerts_per_day']:.1f} (target at most 1)",
            f"drift events: {result['drift_events']}; before the faults, per machine-day: "
            f"{result['false_drift_per_machine_day']:.2f}",
        ]
    )
