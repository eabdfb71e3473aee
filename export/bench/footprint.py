"""The agent's footprint: ``edgewatch run`` started as a gateway starts it, with
``RSS_SENSORS`` replayed sensors at real time; its resident memory after ``RSS_AFTER_S``
seconds, and how long after its start it scored its first window. And its memory with
``MACHINES`` machines of three kinds, each of which has learned its own model on site."""

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from edgewatch.sim.machine import Machine, simulate_waveform

RATE = 25600.0
RSS_SENSORS = 8
RSS_AFTER_S = 4.0
MACHINES = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metric(port: int, line: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            text = r.read().decode()
    except OSError:
        return float("nan")
    found = [float(row.rsplit(" ", 1)[1]) for row in text.splitlines() if row.startswith(line)]
    return found[0] if found else 0.0


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:", 1)[1].split()[0]) / 1024


def machines_footprint(folder: Path) -> tuple[float, int]:
    """RSS (MB) of ``edgewatch run`` once ``MACHINES`` devices (half pumps, half fans and
    blowers) have each learned their own model on site from a replayed recording, and how many
    did. The replay sources hold their recordings, about 14 MB of it."""
    from edgewatch.sim.machine import simulate_process

    np.save(folder / "pump.npy", simulate_process(1200, 3).signal.T.astype(np.float32))
    np.save(folder / "fan.npy", simulate_waveform(Machine(), 4.5, RATE, seed=6).signal.T)
    port = free_port()
    waveform = (
        '{ kind = "waveform", sample_rate = 25600, window = 1024, channels = ["x", "y", "z"] }'
    )
    process = '{ kind = "process", channels = ["temperature", "pressure", "current", "flow"] }'
    learn = "{ min_rows = 200, duration_s = 0 }"
    machines = "".join(
        f'[[machines]]\nname = "{name}"\ndevices = ["{name}-*"]\nlearn = {learn}\n'
        f"features = {spec}\n"
        for name, spec in (("pump", process), ("fan", waveform), ("blower", waveform))
    )
    sources = ""
    for i in range(MACHINES):
        kind = "pump" if i % 2 == 0 else ("fan", "blower")[i // 2 % 2]
        pump = kind == "pump"
        channels = '["temperature", "pressure", "current", "flow"]' if pump else '["x", "y", "z"]'
        recording = folder / ("pump.npy" if pump else "fan.npy")
        sources += (
            f'[[sources]]\ntype = "replay"\npath = "{recording}"\n'
            f'device = "{kind}-{i}"\nchannels = {channels}\nsample_rate = {1 if pump else 25600}\n'
            'speed = "max"\n'
        )
    config = folder / "machines.toml"
    config.write_text(
        f'site = "bench"\ndevice = "gw"\nfeedback_db = "{folder / "fb2.sqlite"}"\n'
        f'learning_dir = "{folder / "learned"}"\nhttp.port = {port}\n{machines}{sources}'
        f'[[sinks]]\ntype = "jsonl"\npath = "{folder / "alerts2.jsonl"}"\n'
    )
    agent = subprocess.Popen(
        [sys.executable, "-m", "edgewatch.agent.cli", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    fits = 'edgewatch_learning_fits_total{result="ok"}'
    try:
        began = time.monotonic()
        while time.monotonic() - began < 180 and not _metric(port, fits) >= MACHINES:
            time.sleep(0.2)
        time.sleep(2.0)
        return _rss_mb(agent.pid), int(_metric(port, fits))
    finally:
        agent.terminate()
        agent.wait(30)


def footprint(bundle: Path, folder: Path) -> tuple[float, float]:
    """RSS (MB) of ``edgewatch run`` with eight sensors, and seconds from start to first score."""
    recording = folder / "sensor.npy"
    signal = simulate_waveform(Machine(), RSS_AFTER_S + 2, RATE, seed=6).signal
    np.save(recording, signal.T.astype(np.float32))
    port = free_port()
    sources = "".join(
        f'[[sources]]\ntype = "replay"\npath = "{recording}"\ndevice = "s{i}"\n'
        'channels = ["x", "y", "z"]\nsample_rate = 25600\nspeed = 1.0\n'
        for i in range(RSS_SENSORS)
    )
    config = folder / "agent.toml"
    config.write_text(
        f'site = "bench"\ndevice = "gw"\nfeedback_db = "{folder / "fb.sqlite"}"\n'
        f'http.port = {port}\n[model]\nbundle = "{bundle}"\n{sources}'
        f'[[sinks]]\ntype = "jsonl"\npath = "{folder / "alerts.jsonl"}"\n'
    )
    began = time.monotonic()
    agent = subprocess.Popen(
        [sys.executable, "-m", "edgewatch.agent.cli", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first = float("nan")
    try:
        while time.monotonic() - began < 30:
            if _metric(port, "edgewatch_windows_scored_total ") > 0:
                first = time.monotonic() - began
                break
            time.sleep(0.005)
        time.sleep(max(0.0, RSS_AFTER_S - (time.monotonic() - began)))
        rss = _rss_mb(agent.pid)
    finally:
        agent.terminate()
        agent.wait(30)
    return rss, first
