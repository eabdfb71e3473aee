"""``edgewatch demo``: a machine from health to three faults, with nothing to set up.

It trains an IsolationForest on a simulated healthy fan (three vibration axes at 25.6 kHz, with
the bearing's geometry in the feature spec), then replays a second run in which three faults
start part-way (an outer-race bearing defect, an imbalance and a dropped-out sensor) through
the agent as ``edgewatch run`` assembles it, block by block as a sensor would send them.
Alerts are printed as they are raised and cleared, with the features that drove them, and
written as JSON lines. The summary gives each fault's detection delay and the false alerts,
and a plot shows the score timeline.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from edgewatch.agent.alerts import Alert
from edgewatch.agent.assembly import Assembly, assemble, replaying
from edgewatch.agent.config import AgentConfig
from edgewatch.agent.decision_settings import Decision
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.model import Model
from edgewatch.agent.sinks.outputs import Record, Sink
from edgewatch.export.config import SimulatedData, TrainConfig
from edgewatch.export.detectors.params import IsolationForestParams
from edgewatch.export.train import train
from edgewatch.sim.machine import Fault, Machine, simulate_waveform

SAMPLE_RATE = 25600.0
CHANNELS = ("x", "y", "z")
HEALTHY_S = 60.0
RUN_S = 90.0
DEVICE = "fan-1"
FAULTS = (
    Fault(kind="outer_race", start=15, end=30, severity=0.5),
    Fault(kind="imbalance", start=45, end=60, severity=0.5),
    Fault(kind="dropout", start=72, end=80, channel=1),
)
DECISION = Decision(n=3, m=5, min_duration_s=0.5, cooldown_s=2.0)
Show = Callable[[str], None]


def config(machine: Machine) -> TrainConfig:
    """Training on a healthy minute of the machine."""
    return TrainConfig(
        name="demo-fan",
        data=SimulatedData(type="simulate", duration=HEALTHY_S, seed=1, machine=machine),
        features=FeatureSpec(
            kind="waveform",
            sample_rate=SAMPLE_RATE,
            window=1024,
            channels=CHANNELS,
            bearing=machine.bearing,
            shaft_hz=machine.shaft_hz,
        ),
        model=IsolationForestParams(),
    )


@dataclass
class Timeline:
    """Every window's end time and calibrated score, and every alert, in order."""

    ends: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    start: float = field(default_factory=lambda: float(round(time.time())))

    def seconds(self, at: datetime) -> float:
        """``at`` in seconds from the start of the run."""
        return at.timestamp() - self.start


class Console(Sink):
    """A sink that prints each alert transition on one line, with its top drivers."""

    def __init__(self, show: Show, timeline: Timeline) -> None:
        super().__init__()
        self.show, self.timeline = show, timeline

    def _write(self, records: Sequence[Record]) -> None:
        for alert in records:
            if isinstance(alert, Alert):
                self._show(alert)

    def _show(self, alert: Alert) -> None:
        self.timeline.alerts.append(alert)
        line = (
            f"  {self.timeline.seconds(alert.ts):6.1f} s  {alert.state:<9} {alert.severity:<8}"
            f" score {alert.score:5.2f}  {alert.alert_id[:8]}"
        )
        drivers = ", ".join(f"{d.name} ({d.deviation:+.1f})" for d in alert.features[:3])
        self.show(f"{line}  {drivers}" if drivers else line)


def agent_config(out: Path, speed: float | None, timeline: Timeline) -> AgentConfig:
    """The agent the demo runs: the recording in ``out`` replayed as ``DEVICE`` from the
    timeline's start, at ``speed`` times real time (None: as fast as it goes), and its alerts
    into ``alerts.jsonl``."""
    source = {
        "device": DEVICE,
        "path": out / "recording.npy",
        "channels": CHANNELS,
        "sample_rate": SAMPLE_RATE,
        "speed": "max" if speed is None else speed,
        "start_ts": timeline.start,
    }
    sink = {"type": "jsonl", "path": out / "alerts.jsonl"}
    return replaying("demo", out / "bundle", DECISION, source, sink)


def stream(parts: Assembly, timeline: Timeline) -> None:
    """The replay source plays its recording through the pipeline; every batch's window end
    times and scores go on the timeline."""
    reader, pipeline = parts.play(), parts.pipeline
    while not (reader.done.is_set() and pipeline.inbox.empty()):
        batch = pipeline.process(pipeline.drain(timeout=0.2))
        timeline.ends.extend(part.ends - timeline.start for part in batch.parts)
        timeline.scores.extend(batch.scores)


@dataclass(frozen=True)
class Outcome:
    """A fault and the first alert raised while it lasted, if any."""

    fault: Fault
    delay_s: float | None


def _during(fault: Fault, began: float, slack_s: float) -> bool:
    """Whether an alert that started at ``began`` belongs to ``fault``: it started while the fault
    lasted, or within ``slack_s`` after it ended (the last windows still hold its samples)."""
    return fault.start <= began < fault.end + slack_s


def outcomes(faults: tuple[Fault, ...], timeline: Timeline, slack_s: float) -> list[Outcome]:
    """Per fault, the delay from its start to the first alert raised during it."""
    raised = [
        (timeline.seconds(a.started_at), timeline.seconds(a.ts))
        for a in timeline.alerts
        if a.state == "raised"
    ]
    found = []
    for fault in faults:
        during = [ts for began, ts in raised if _during(fault, began, slack_s)]
        found.append(Outcome(fault, min(during) - fault.start if during else None))
    return found


def false_alerts(faults: tuple[Fault, ...], timeline: Timeline, slack_s: float) -> list[Alert]:
    """Alerts raised outside every fault."""
    return [
        a
        for a in timeline.alerts
        if a.state == "raised"
        and not any(_during(f, timeline.seconds(a.started_at), slack_s) for f in faults)
    ]


def plot(path: Path, timeline: Timeline, faults: tuple[Fault, ...], model: Model) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ends, scores = np.concatenate(timeline.ends), np.concatenate(timeline.scores)
    thresholds = model.bundle.manifest.thresholds
    figure, axes = plt.subplots(figsize=(10, 3.5))
    axes.plot(ends, scores, lw=0.8, color="tab:blue", label="score")
    for fault in faults:
        axes.axvspan(fault.start, fault.end, color="tab:red", alpha=0.12)
        axes.text(fault.start, scores.max(), fault.kind, fontsize=8, va="top")
    axes.axhline(thresholds.warning, color="tab:orange", ls="--", lw=1, label="warning")
    axes.axhline(thresholds.critical, color="tab:red", ls="--", lw=1, label="critical")
    for alert in timeline.alerts:
        if alert.state == "raised":
            axes.axvline(timeline.seconds(alert.ts), color="black", lw=0.6, alpha=0.6)
    axes.set_xlabel("time (s)")
    axes.set_ylabel("calibrated score")
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run(out: Path, speed: float | None, show: Show, progress: Show) -> dict[str, object]:
    """The whole demo; returns the summary it printed."""
    machine = Machine()
    show(f"1/3 training on {HEALTHY_S:.0f} s of a healthy fan (3 axes, 25.6 kHz)")
    bundle = train(config(machine), out / "bundle", progress=progress)
    model = Model.load(bundle, DECISION)
    thresholds = bundle.manifest.thresholds
    show(
        f"    thresholds: warning {thresholds.warning:.2f}, "
        f"critical {thresholds.critical:.2f} (calibrated scale)"
    )
    recording = simulate_waveform(machine, RUN_S, SAMPLE_RATE, seed=7, faults=FAULTS)
    faults = ", ".join(f"{f.kind} {f.start:g}-{f.end:g} s" for f in FAULTS)
    pace = "as fast as it goes" if speed is None else f"{speed:g}x real time"
    show(f"2/3 streaming a {RUN_S:.0f} s run with faults ({faults}), {pace}")
    timeline = Timeline()
    jsonl = out / "alerts.jsonl"
    jsonl.unlink(missing_ok=True)
    np.save(out / "recording.npy", recording.signal.T)
    parts = assemble(agent_config(out, speed, timeline), model, sinks=[Console(show, timeline)])
    try:
        stream(parts, timeline)
    finally:
        parts.pipeline.close()
    slack = bundle.manifest.feature_spec.window / SAMPLE_RATE
    found = outcomes(FAULTS, timeline, slack)
    false = false_alerts(FAULTS, timeline, slack)
    plot(out / "scores.png", timeline, FAULTS, model)
    show("3/3 summary")
    for outcome in found:
        delay = "missed" if outcome.delay_s is None else f"detected after {outcome.delay_s:.2f} s"
        show(f"    {outcome.fault.kind:<11} {delay}")
    show(f"    false alerts: {len(false)}")
    show(f"    bundle: {out / 'bundle'}")
    show(f"    alerts: {jsonl}")
    show(f"    plot:   {out / 'scores.png'}")
    return {
        "faults": [{"kind": o.fault.kind, "delay_s": o.delay_s} for o in found],
        "false_alerts": len(false),
        "bundle": str(out / "bundle"),
        "alerts": str(jsonl),
        "plot": str(out / "scores.png"),
    }
