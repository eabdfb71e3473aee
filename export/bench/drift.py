"""``edgewatch bench drift``: how often the drift watch signals on normal running that never
drifts, with the agent's default settings.

A fan (a stationary vibration machine: one-second bursts every minute, each drawn from a pool
of independently simulated healthy bursts) and a pump (process rows at 1 Hz, its load a
stationary mean-reverting walk with a five-minute time constant) learn on site with the default
settings, then run for ``days`` with no fault. Reported for each: the drift signals per 30 days
(the target is at most one), and the alerts per day beside them. The pump's load is stationary
but wanders further than an hour of it shows; its signals say that its calibration does not
hold, which is what the watch is for, and they are reported as they are.
"""

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgewatch.agent.framing import Block
from edgewatch.export.bench.gateway import BURST_EVERY_S, DAY_S, RATE, watched
from edgewatch.sim.machine import PROCESS_CHANNELS, Machine, simulate_process, simulate_waveform

POOL = 2000
LEARN_S = 3900


def run(days: float = 30.0, seed: int = 0) -> dict[str, Any]:
    seconds = LEARN_S + days * DAY_S
    rng = np.random.default_rng(seed)
    pool = [simulate_waveform(Machine(), 1.0, RATE, seed * POOL + i).signal for i in range(POOL)]
    pump = simulate_process(seconds, seed + 1).signal
    with tempfile.TemporaryDirectory() as folder:
        pipe, raised, events = watched(Path(folder))
        for minute in range(int(seconds // BURST_EVERY_S)):
            t0 = minute * BURST_EVERY_S
            burst = pool[int(rng.integers(POOL))]
            blocks = [Block("fan-0", t0 + s / RATE, RATE, burst[:, s : s + 2560])
                      for s in range(0, burst.shape[1], 2560)]  # fmt: skip
            rows = pump[:, t0 : t0 + BURST_EVERY_S]
            blocks.append(Block("pump-0", t0, 1.0, rows, PROCESS_CHANNELS))
            pipe.process(blocks)
    result: dict[str, Any] = {"days": days}
    for device in ("fan-0", "pump-0"):
        drifts = [e for e in events if e.get("device") == device]
        alerts = [
            a for a in raised.raised if a.device == device and a.started_at.timestamp() > LEARN_S
        ]
        result[device] = {
            "drift_per_30_days": len(drifts) * 30 / days,
            "first_drift_day": (float(drifts[0]["ts"]) - LEARN_S) / DAY_S if drifts else None,  # type: ignore[arg-type]
            "alerts_per_day": len(alerts) / days,
        }
    return result


def render(result: dict[str, Any]) -> str:
    lines = [
        f"{result['days']:g} days of normal running after learning; "
        "target: at most one drift signal per 30 days"
    ]
    for device in ("fan-0", "pump-0"):
        r = result[device]
        first = (
            "" if r["first_drift_day"] is None else f" (first on day {r['first_drift_day']:.1f})"
        )
        lines.append(
            f"{device}: {r['drift_per_30_days']:.1f} drift signals per 30 days{first}, "
            f"{r['alerts_per_day']:.1f} alerts per day"
        )
    return "\n".join(lines)
