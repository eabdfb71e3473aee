"""The agent's footprint: ``edgewatch run`` started as a gateway starts it, with
``RSS_SENSORS`` replayed sensors at real time; its resident memory after ``RSS_AFTER_S``
seconds, and how long after its start it scored its first window."""

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
                    text = r.read().decode()
            except OSError:
                time.sleep(0.005)
                continue
            scored = [
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("edgewatch_windows_scored_total ")
            ]
            if scored and scored[0] > 0:
                first = time.monotonic() - began
                break
            time.sleep(0.005)
        time.sleep(max(0.0, RSS_AFTER_S - (time.monotonic() - began)))
        status = Path(f"/proc/{agent.pid}/status").read_text()
        rss_kb = int(status.split("VmRSS:", 1)[1].split()[0])
    finally:
        agent.terminate()
        agent.wait(30)
    return rss_kb / 1024, first
