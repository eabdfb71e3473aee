"""Seeded, deterministic machine signals with injectable faults and their ground truth.

A waveform is built from the shaft's phase, so every shaft-locked component (harmonics, gear
mesh, bearing impacts) follows speed changes the way it does on a real machine. Sensor faults
(dropout, spike, stuck value, saturation) are applied last, to what the sensor reports.
Process signals are slow rows driven by one shared load, hence correlated.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from edgewatch.agent.features import Bearing
from edgewatch.agent.schema import Frozen
from edgewatch.agent.windows import frame
from edgewatch.kernels.layout import bearing_frequencies

MachineFault = Literal["outer_race", "inner_race", "ball", "imbalance", "misalignment", "looseness"]
SensorFault = Literal["dropout", "spike", "stuck", "saturation"]
ProcessFault = Literal["drift", "step", "spike"]
PROCESS_CHANNELS = ("temperature", "pressure", "current", "flow")
# Each axis's gain for (shaft-locked components, bearing impacts): two radial axes, one axial.
_AXIS_GAINS = ((1.0, 1.0), (0.8, 0.7), (0.4, 0.3))
_IMPACT_G = 1.5


class Fault(Frozen):
    """One fault from ``start`` to ``end`` seconds; ``channel`` None means every channel."""

    kind: MachineFault | SensorFault | ProcessFault
    start: float = Field(ge=0)
    end: float
    severity: float = Field(default=1.0, gt=0, le=100)
    channel: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> "Fault":
        if self.end <= self.start:
            raise ValueError(f"end ({self.end:g} s) must come after start ({self.start:g} s)")
        return self


class Machine(Frozen):
    """A motor-driven machine with a geared stage and an instrumented rolling bearing."""

    shaft_hz: float = Field(default=29.95, gt=0, le=500)
    harmonics: tuple[float, ...] = (0.30, 0.10, 0.05)
    gear_teeth: int = Field(default=23, ge=0)
    gear_amplitude: float = Field(default=0.15, ge=0)
    bearing: Bearing = Bearing(balls=9, ball_diameter=7.94, pitch_diameter=39.04)
    resonance_hz: float = Field(default=4000.0, gt=0)
    damping: float = Field(default=0.05, gt=0, lt=1)
    noise_rms: float = Field(default=0.10, ge=0)
    speed_changes: tuple[tuple[float, float], ...] = ()
    load_changes: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class Simulation:
    """``signal[channels, samples]`` with ``labels[samples]``: 0 healthy, else 1 + fault index."""

    signal: np.ndarray
    labels: np.ndarray
    faults: tuple[Fault, ...]
    sample_rate: float

    def windows(self, window: int, hop: int) -> np.ndarray:
        """``[n, channels, window]`` float32 windows."""
        return frame(self.signal, window, hop)

    @property
    def rows(self) -> np.ndarray:
        """``[samples, channels]``, the layout of process rows."""
        return np.ascontiguousarray(self.signal.T)


def _profile(t: np.ndarray, start: float, changes: tuple[tuple[float, float], ...]) -> np.ndarray:
    """A value that ramps linearly between ``(time, value)`` breakpoints, from ``start`` at 0."""
    times = np.array([0.0, *(c[0] for c in changes)])
    values = np.array([start, *(c[1] for c in changes)])
    ramp: np.ndarray = np.interp(t, times, values)
    return ramp


def _labels(n: int, sample_rate: float, faults: tuple[Fault, ...]) -> np.ndarray:
    labels = np.zeros(n, dtype=np.int16)
    for i, fault in enumerate(faults, start=1):
        labels[_span(fault, sample_rate, n)] = i
    return labels


def _span(fault: Fault, sample_rate: float, n: int) -> slice:
    return slice(min(round(fault.start * sample_rate), n), min(round(fault.end * sample_rate), n))


def _impacts(
    revolutions: np.ndarray,
    t: np.ndarray,
    order: float,
    fault: Fault,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Impact times of a defect struck ``order`` times per shaft revolution, with 1 % slip,
    and the shaft revolution at each."""
    count = int(revolutions[-1] * order) + 1
    at = (np.arange(count) + rng.normal(0.0, 0.01, count)) / order
    times = np.interp(at, revolutions, t)
    keep = (times >= fault.start) & (times < fault.end) & (at <= revolutions[-1])
    return times[keep], at[keep]


def _ring(sample_rate: float, frequency: float, damping: float) -> np.ndarray:
    """A structural resonance's response to one unit impact, until it has decayed to 1 %."""
    decay = 2 * np.pi * damping * frequency
    tau = np.arange(int(np.log(100.0) / decay * sample_rate) + 1) / sample_rate
    ring: np.ndarray = np.exp(-decay * tau) * np.sin(
        2 * np.pi * frequency * np.sqrt(1 - damping**2) * tau
    )
    return ring


def simulate_waveform(
    machine: Machine,
    duration: float,
    sample_rate: float,
    seed: int,
    faults: list[Fault] | tuple[Fault, ...] = (),
    channels: int = 3,
    tachometer: int = 0,
) -> Simulation:
    """Vibration in g on up to three axes (two radial, one axial); with ``tachometer``, a last
    channel of 5 V pulses, that many a revolution, each a tenth of the way to the next."""
    if not 1 <= channels <= len(_AXIS_GAINS):
        raise ValueError(f"channels must be 1 to {len(_AXIS_GAINS)}, got {channels}")
    faults = tuple(faults)
    for fault in faults:
        if fault.kind in ("drift", "step"):
            raise ValueError(f"{fault.kind} is a process fault, not a waveform fault")
    _check_channels(faults, channels)
    rng = np.random.default_rng(seed)
    n = round(duration * sample_rate)
    t = np.arange(n) / sample_rate
    speed = _profile(t, machine.shaft_hz, machine.speed_changes)
    load = _profile(t, 1.0, machine.load_changes)
    revolutions = np.cumsum(speed) / sample_rate
    theta = 2 * np.pi * revolutions
    signal = np.zeros((channels, n))
    for axis in range(channels):
        shaft_gain = _AXIS_GAINS[axis][0]
        quadrature = axis * np.pi / 2
        locked = sum(
            a * np.sin((h + 1) * theta + quadrature + h) for h, a in enumerate(machine.harmonics)
        )
        mesh = (
            machine.gear_amplitude
            * (1 + 0.3 * np.cos(theta))
            * np.sin(machine.gear_teeth * theta + quadrature)
        )
        signal[axis] = shaft_gain * load * (locked + mesh)
        signal[axis] += rng.normal(0.0, machine.noise_rms, n)
    impacts = np.zeros(n)
    for fault in faults:
        span = (t >= fault.start) & (t < fault.end)
        s = fault.severity
        if fault.kind == "imbalance":
            for axis in range(channels):
                gain = _AXIS_GAINS[axis][0] * (0.3 if axis == 2 else 1.0)
                signal[axis, span] += gain * 0.5 * s * np.sin(theta[span] + axis * np.pi / 2)
        elif fault.kind == "misalignment":
            for axis in range(channels):
                gain = 1.5 if axis == 2 else 0.6
                signal[axis, span] += (
                    gain * s * (0.4 * np.sin(2 * theta[span]) + 0.2 * np.sin(theta[span]))
                )
        elif fault.kind == "looseness":
            loose = sum(0.15 / h * np.sin(h * theta[span] + h) for h in range(1, 11))
            loose += 0.1 * np.sin(0.5 * theta[span]) + 0.05 * np.sin(1.5 * theta[span])
            for axis in range(channels):
                signal[axis, span] += _AXIS_GAINS[axis][0] * s * np.clip(loose, -0.3, None)
        elif fault.kind in ("outer_race", "inner_race", "ball"):
            impacts += _defect_impacts(machine, fault, revolutions, t, sample_rate, rng)
    if impacts.any():
        for axis in range(channels):
            ring = _ring(sample_rate, machine.resonance_hz * (1 + 0.07 * axis), machine.damping)
            signal[axis] += _AXIS_GAINS[axis][1] * np.convolve(impacts, ring)[:n]
    for fault in faults:
        _sensor_fault(signal, fault, sample_rate, rng)
    if tachometer:
        pulses = 5.0 * ((revolutions * tachometer) % 1.0 < 0.1)
        signal = np.vstack([signal, pulses])
    return Simulation(
        signal.astype(np.float32), _labels(n, sample_rate, faults), faults, sample_rate
    )


def _defect_impacts(
    machine: Machine,
    fault: Fault,
    revolutions: np.ndarray,
    t: np.ndarray,
    sample_rate: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Unit impulses, one per rolling element passing the defect, weighted by the load zone."""
    b = machine.bearing
    bpfo, bpfi, bsf, ftf = bearing_frequencies(
        1.0, b.balls, b.ball_diameter, b.pitch_diameter, b.contact_angle_deg
    )
    order = {"outer_race": bpfo, "inner_race": bpfi, "ball": 2 * bsf}[fault.kind]
    times, at = _impacts(revolutions, t, order, fault, rng)
    weight = np.full(times.size, _IMPACT_G * fault.severity)
    if fault.kind == "inner_race":
        weight *= 0.55 + 0.45 * np.cos(2 * np.pi * at)
    elif fault.kind == "ball":
        weight *= 0.55 + 0.45 * np.cos(2 * np.pi * ftf * at)
    impacts = np.zeros(t.size)
    np.add.at(
        impacts, np.minimum(np.round(times * sample_rate).astype(np.int64), t.size - 1), weight
    )
    return impacts


def _sensor_fault(
    signal: np.ndarray, fault: Fault, sample_rate: float, rng: np.random.Generator
) -> None:
    if fault.kind not in ("dropout", "spike", "stuck", "saturation"):
        return
    span = _span(fault, sample_rate, signal.shape[1])
    axes = range(signal.shape[0]) if fault.channel is None else [fault.channel]
    for axis in axes:
        part = signal[axis, span]
        if part.size == 0:
            continue
        if fault.kind == "dropout":
            part[:] = 0.0
        elif fault.kind == "stuck":
            part[:] = part[0]
        elif fault.kind == "saturation":
            level = 0.5 / fault.severity * np.abs(part).max()
            np.clip(part, -level, level, out=part)
        else:
            count = max(1, int(5 * fault.severity * part.size / sample_rate))
            at = rng.integers(0, part.size, count)
            part[at] = rng.choice([-1.0, 1.0], count) * 10.0 * fault.severity


# Per process channel: sensor noise, and the size of a fault of severity 1.
_PROCESS_NOISE = {"temperature": 0.05, "pressure": 0.01, "current": 0.05, "flow": 0.5}
_PROCESS_FAULT_SCALE = {"temperature": 2.0, "pressure": 0.2, "current": 0.5, "flow": 5.0}


def _check_channels(faults: tuple[Fault, ...], channels: int) -> None:
    for fault in faults:
        if fault.channel is not None and fault.channel >= channels:
            raise ValueError(
                f"{fault.kind} fault on channel {fault.channel}, but there are {channels} channels"
            )


def simulate_process(
    duration: float,
    seed: int,
    faults: list[Fault] | tuple[Fault, ...] = (),
    rate: float = 1.0,
) -> Simulation:
    """Temperature, pressure, current and flow rows driven by one wandering load.

    Current follows load, pressure its square, flow its square root; temperature lags the
    load by minutes. Faults: ``drift`` (a ramp up to 1 fault scale x severity), ``step`` and
    ``spike`` (about one a minute), on ``channel`` or on every channel.
    """
    faults = tuple(faults)
    for fault in faults:
        if fault.kind not in ("drift", "step", "spike"):
            raise ValueError(f"{fault.kind} is a waveform fault, not a process fault")
    _check_channels(faults, len(PROCESS_CHANNELS))
    rng = np.random.default_rng(seed)
    n = round(duration * rate)
    t = np.arange(n) / rate
    load = np.empty(n)
    level = 0.7
    pull, jitter = 1.0 / (300.0 * rate), 0.01 / np.sqrt(rate)
    for i in range(n):
        level += pull * (0.7 - level) + rng.normal(0.0, jitter)
        load[i] = level
    load = np.clip(load, 0.2, 1.0)
    lag = np.empty(n)
    heat = 40.0 + 25.0 * load[0]
    for i in range(n):
        heat += (40.0 + 25.0 * load[i] - heat) / (600.0 * rate)
        lag[i] = heat
    values = {
        "temperature": lag,
        "pressure": 1.5 + 2.5 * load**2,
        "current": 8.0 + 6.0 * load,
        "flow": 120.0 * np.sqrt(load),
    }
    signal = np.stack([values[c] + rng.normal(0.0, _PROCESS_NOISE[c], n) for c in PROCESS_CHANNELS])
    for fault in faults:
        span = (t >= fault.start) & (t < fault.end)
        channels = range(len(PROCESS_CHANNELS)) if fault.channel is None else [fault.channel]
        for c in channels:
            scale = _PROCESS_FAULT_SCALE[PROCESS_CHANNELS[c]] * fault.severity
            if fault.kind == "drift":
                signal[c, span] += scale * (t[span] - fault.start) / (fault.end - fault.start)
            elif fault.kind == "step":
                signal[c, span] += scale
            else:
                hits = np.flatnonzero(span)
                hits = hits[rng.random(hits.size) < 1.0 / (60.0 * rate)]
                signal[c, hits] += 5.0 * scale * rng.choice([-1.0, 1.0], hits.size)
    return Simulation(signal, _labels(n, rate, faults), faults, rate)
