"""``edgewatch bench pipeline``: how many sensors the agent carries, and how it behaves on a
real broker, on this machine.

The sensor: three axes of 25.6 kHz vibration, 1024-sample windows with a hop of 512, scored by
the compact IsolationForest (trained here on a simulated healthy machine).

- **sensors_per_core** (and ``sensors_per_core_hop_blocks``, blocks of one hop, the worst
  case): decoded blocks through the inbox, windows, features, scores, decisions
  and alerts into the SQLite spool, for ``DEVICES`` sensors (a few with a bearing fault, so
  alerts are raised and spooled), in blocks of 0.1 s as ``edgewatch simulate`` sends them,
  with the kernels and onnxruntime on one thread each, as the agent runs them by default; the
  signal seconds carried per CPU second of the process.
- **seed_sensors_per_core**: the same windows the seed's way, measured in the same run:
  NumPy features for one window at a time, then scikit-learn's ``score_samples`` on its row.
- **mqtt_samples_per_s**: a separate process publishes binary blocks (QoS 1) as fast as it can
  to a Mosquitto started here; the agent's MQTT source and pipeline take them. Values (samples
  times channels) per CPU second of the agent side, and how many were lost.
- **alert_latency_p99_ms**: from handing the pipeline the block that completes an anomalous
  window to the broker's PUBACK of its alert, one alert at a time.
- **rss_mb** and **first_score_s**: ``edgewatch run`` with eight replayed sensors at real time;
  its resident memory after ``footprint.RSS_AFTER_S`` seconds, while they still stream, and how long
  after the process started its first window was scored (the kernels built).
- **kernels**: which compiled form of the kernels all of the above ran (``kernels.runtime``):
  ``native`` when it can be built here, as ``edgewatch warmup`` builds it on a gateway.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgewatch.agent.assembly import Assembly, assemble
from edgewatch.agent.bundle import verify_bundle
from edgewatch.agent.config import validate
from edgewatch.agent.decision_settings import Decision, ShadowSettings
from edgewatch.agent.framing import Block
from edgewatch.agent.model import Model
from edgewatch.agent.sinks.spool import Message
from edgewatch.export.bench.footprint import footprint, free_port
from edgewatch.export.bench.numpy_features import numpy_features
from edgewatch.export.bench.timing import steady_heap
from edgewatch.export.config import TrainConfig, parse_config
from edgewatch.export.train import train
from edgewatch.kernels import native, runtime
from edgewatch.sim.machine import Fault, Machine, simulate_waveform

RATE = 25600.0
WINDOW, HOP = 1024, 512
BLOCK_S = 0.1
DEVICES = 64
SECONDS = 4.0
AXES = ("x", "y", "z")


@dataclass(frozen=True)
class Sensor:
    """One kind of sensor: its sample rate, window, hop and axes, and the model that scores it."""

    rate: float = RATE
    window: int = WINDOW
    hop: int = HOP
    axes: int = 3
    model: str = "isolation_forest"

    def describe(self) -> str:
        return (
            f"{self.axes} axes at {self.rate / 1000:g} kHz, windows of {self.window} with hop "
            f"{self.hop}, {self.model}"
        )

    def training(self) -> TrainConfig:
        """The training config of a model for it, on a healthy simulated minute; a sensor
        the feature spec or the model refuses fails here, with one line per problem."""
        return parse_config(f"""
name = "bench"
[data]
type = "simulate"
duration = 60
[features]
kind = "waveform"
sample_rate = {self.rate}
window = {self.window}
hop = {self.hop}
channels = {list(AXES[: self.axes])}
[model]
kind = "{self.model}"
""")


def _signals(sensor: Sensor, devices: int, seconds: float) -> list[np.ndarray]:
    fault = Fault(kind="outer_race", start=seconds / 2, end=seconds, severity=3)
    return [
        simulate_waveform(
            Machine(),
            seconds,
            sensor.rate,
            seed=i,
            faults=(fault,) if i % 16 == 0 else (),
            channels=sensor.axes,
        ).signal
        for i in range(devices)
    ]


def _agent(bundle: Path, decision: Decision, folder: Path, name: str, port: int = 1883) -> Assembly:
    """The agent as ``edgewatch run`` assembles it: binary blocks from the broker on ``port``
    (not started: a benchmark may hand the pipeline its blocks itself), alerts through a spool
    in ``folder`` to the broker."""
    config = validate(
        {
            "site": "bench",
            "device": name,
            "model": {"bundle": bundle, "watch": False},
            "decision": decision,
            "mqtt": {"host": "127.0.0.1", "port": port},
            "spool": {
                "path": folder / f"{name}.sqlite",
                "max_rows": 1_000_000,
                "max_bytes": 1 << 30,
            },
            "sources": [
                {"type": "mqtt", "topic": "sensors/#", "format": "binary", "max_inflight": 100}
            ],
            "sinks": [{"type": "mqtt"}],
        }
    )
    return assemble(config, Model.load(verify_bundle(bundle), decision))


def _capacity(
    bundle: Path,
    sensor: Sensor,
    folder: Path,
    rounds: int,
    block_s: float = BLOCK_S,
    devices: int = DEVICES,
    seconds: float = SECONDS,
    shadow: bool = False,
) -> tuple[float, int]:
    """Signal seconds per CPU second through the whole in-process pipeline, median of rounds
    after one untimed round (which loads the Numba cache), and the alerts spooled. With
    ``shadow``, a candidate (the same bundle) is on trial beside the model all along."""
    signals = _signals(sensor, devices, seconds)
    block = max(1, round(block_s * sensor.rate))
    blocks = [
        [
            Block(f"s{d}", t / sensor.rate, sensor.rate, signal[:, t : t + block])
            for d, signal in enumerate(signals)
        ]
        for t in range(0, signals[0].shape[1], block)
    ]
    rates, alerts = [], 0
    for r in range(rounds + 1):
        parts = _agent(bundle, Decision(warmup_windows=5), folder, f"capacity{block}-{r}")
        pipeline, spool = parts.pipeline, parts.spool
        assert spool is not None
        if shadow:
            pipeline.trials.settings = ShadowSettings(duration_s=90 * 86_400, min_windows=10**9)
            pipeline.try_out(Model.load(verify_bundle(bundle), Decision(warmup_windows=5)))
            pipeline.process([])
        began = time.process_time()
        for round_blocks in blocks:
            for each in round_blocks:
                pipeline.offer(each)
            while pipeline.inbox.qsize():
                pipeline.process(pipeline.drain(0))
        cpu = time.process_time() - began
        if r:
            rates.append(devices * seconds / cpu)
        alerts = spool.rows
        spool.close()
    return float(np.median(rates)), alerts


def capacity(
    sensor: Sensor, rounds: int = 3, devices: int = DEVICES, seconds: float = SECONDS
) -> dict[str, Any]:
    """How many sensors of this kind one agent carries per core, with a model trained for it."""
    runtime.select(1)
    with tempfile.TemporaryDirectory(prefix="edgewatch-bench-") as tmp:
        folder = Path(tmp)
        train(sensor.training(), folder / "bundle")
        per_core, alerts = _capacity(
            folder / "bundle", sensor, folder, rounds, devices=devices, seconds=seconds
        )
    return capacity_of(sensor, per_core, alerts)


def capacity_of(sensor: Sensor, per_core: float, alerts: int) -> dict[str, Any]:
    """The capacity object for ``sensor`` from its measured sensors per core."""
    cores = len(os.sched_getaffinity(0))
    return {
        "sensor": asdict(sensor),
        "sensors_per_core": per_core,
        "cores": cores,
        "sensors": per_core * cores,
        "alerts_spooled": alerts,
    }


def _seed(bundle: Path, windows: int = 300) -> float:
    """Sensors per core, the seed's way."""
    from sklearn.ensemble import IsolationForest

    spec = verify_bundle(bundle).manifest.feature_spec
    signal = simulate_waveform(Machine(), 8.0, RATE, seed=1).signal
    frames = np.lib.stride_tricks.sliding_window_view(signal, WINDOW, axis=1)[:, ::HOP]
    frames = np.ascontiguousarray(np.moveaxis(frames, 1, 0))
    rows = numpy_features(spec, frames)
    forest = IsolationForest(random_state=0).fit(rows)
    began = time.process_time()
    for i in range(windows):
        row = numpy_features(spec, frames[i % len(frames)][None].astype(np.float64))
        forest.score_samples(row)
    per_window = (time.process_time() - began) / windows
    return 1.0 / (per_window * RATE / HOP)


class _Mosquitto:
    def __init__(self, folder: Path) -> None:
        binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
        if binary is None:
            raise RuntimeError("bench pipeline needs mosquitto (apt-get install mosquitto)")
        self.port = free_port()
        config = folder / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            "max_queued_messages 0\nmax_inflight_messages 100\n"
            + ("user root\n" if os.geteuid() == 0 else "")
        )
        self.process = subprocess.Popen(
            [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def _mqtt_ingest(bundle: Path, port: int, folder: Path, seconds: float = 60.0) -> tuple[float, int]:
    """Values per CPU second over MQTT, and how many were lost."""
    parts = _agent(bundle, Decision(), folder, "ingest", port)
    pipeline, reader = parts.pipeline, parts.sources[0]
    stop, done = threading.Event(), threading.Event()
    threading.Thread(target=reader.run, args=(stop,), daemon=True).start()
    threading.Thread(target=pipeline.run, args=(done,), daemon=True).start()
    if not reader.connected.wait(10):
        raise RuntimeError("the MQTT source did not connect")
    url = f"mqtt://127.0.0.1:{port}/sensors/s"
    began = time.process_time()
    subprocess.run(
        [sys.executable, "-m", "edgewatch.agent.cli", "simulate", "--to", url,
         "--duration", str(seconds), "--speed", "max", "--block", "0.1", "--seed", "3"],
        check=True, capture_output=True,
    )  # fmt: skip
    sent = int(seconds * RATE)
    deadline = time.monotonic() + 30
    while pipeline.registry.value("samples_in_total") < sent and time.monotonic() < deadline:
        time.sleep(0.01)
    cpu = time.process_time() - began
    received = int(pipeline.registry.value("samples_in_total"))
    stop.set()
    done.set()
    return 3 * received / cpu, sent - received


def _latency(bundle: Path, port: int, folder: Path, alerts: int = 200) -> float:
    """p99 ms from a completed anomalous window to its alert's PUBACK."""
    decision = Decision(warmup_windows=0, n=1, m=1, hysteresis=0, cooldown_s=0)
    parts = _agent(bundle, decision, folder, "latency", port)
    pipeline, spool, forwarder = parts.pipeline, parts.spool, parts.forwarder
    assert spool is not None and forwarder is not None
    acked: dict[int, float] = {}
    seen = threading.Event()

    def delivered(message: Message, at: float) -> None:
        acked[message.id] = at
        seen.set()

    forwarder.delivered = delivered
    forwarder.start()
    deadline = time.monotonic() + 10
    while not forwarder.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    healthy = simulate_waveform(Machine(), 1.0, RATE, seed=2).signal
    fault = Fault(kind="outer_race", start=0, end=1, severity=6)
    faulty = simulate_waveform(Machine(), 1.0, RATE, seed=4, faults=(fault,)).signal
    ts = 0.0
    waits = []
    for i in range(alerts):
        signal = faulty if i % 2 == 0 else healthy
        start = (i * WINDOW) % (signal.shape[1] - WINDOW)
        block = Block("m", ts, RATE, signal[:, start : start + WINDOW])
        ts += 10.0  # a gap: each block makes one fresh window
        seen.clear()
        began = time.perf_counter()
        before = spool.rows
        pipeline.process([block])
        if spool.rows == before:
            continue
        last = spool.last_id()
        while last not in acked and seen.wait(5):
            seen.clear()
        if last in acked:
            waits.append(acked[last] - began)
    forwarder.stop(flush_s=1)
    spool.close()
    if not waits:
        raise RuntimeError("no alert was delivered")
    return float(np.percentile(waits, 99) * 1e3)


def run(rounds: int = 3) -> dict[str, Any]:
    steady_heap()
    try:
        native.build()
    except native.Unavailable as e:
        print(f"edgewatch bench: {e}", file=sys.stderr)
    kernels = runtime.select(1)
    with tempfile.TemporaryDirectory(prefix="edgewatch-bench-") as tmp:
        folder = Path(tmp)
        bundle = folder / "bundle"
        train(Sensor().training(), bundle)
        sensors, alerts = _capacity(bundle, Sensor(), folder, rounds)
        hop_sensors, _ = _capacity(bundle, Sensor(), folder, rounds, HOP / RATE)
        shadowed, _ = _capacity(bundle, Sensor(), folder, rounds, shadow=True)
        seed = _seed(bundle)
        broker = _Mosquitto(folder)
        try:
            mqtt_rate, lost = _mqtt_ingest(bundle, broker.port, folder)
            latency = _latency(bundle, broker.port, folder)
        finally:
            broker.stop()
        rss, first = footprint(bundle, folder)
    return {
        "pipeline": {
            "sensors_per_core": sensors,
            "sensors_per_core_hop_blocks": hop_sensors,
            "sensors_per_core_in_shadow": shadowed,
            "seed_sensors_per_core": seed,
            "mqtt_samples_per_s": mqtt_rate,
            "mqtt_lost": lost,
            "alert_latency_p99_ms": latency,
            "rss_mb": rss,
            "first_score_s": first,
            "kernels": kernels.form,
        },
        "alerts_spooled": alerts,
        "rounds": rounds,
    }


def render(result: dict[str, Any]) -> str:
    p = result["pipeline"]
    return "\n".join(
        [
            "sensor: 3 axes at 25.6 kHz, windows of 1024 with hop 512, compact IsolationForest",
            f"kernels                  {p['kernels']:>10}",
            f"in-process capacity      {p['sensors_per_core']:>10.0f} sensors per core "
            f"(median of {result['rounds']} rounds; {result['alerts_spooled']} alerts spooled)",
            f"  in blocks of one hop   {p['sensors_per_core_hop_blocks']:>10.0f} sensors per core",
            f"  every sensor on trial  {p['sensors_per_core_in_shadow']:>10.0f} sensors per core "
            "(a candidate scored beside the model)",
            f"seed-style pipeline      {p['seed_sensors_per_core']:>10.1f} sensors per core "
            f"({p['sensors_per_core'] / p['seed_sensors_per_core']:.0f}x slower)",
            f"MQTT ingest (Mosquitto)  {p['mqtt_samples_per_s'] / 1e6:>10.2f} M values per CPU "
            f"second, {p['mqtt_lost']} samples lost",
            f"window to PUBACK         {p['alert_latency_p99_ms']:>10.2f} ms p99",
            f"agent RSS, 8 sensors     {p['rss_mb']:>10.0f} MB",
            f"start to first score     {p['first_score_s']:>10.2f} s",
        ]
    )
