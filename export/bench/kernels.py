"""``edgewatch bench kernels``: the featurizer against batched NumPy and against the FFT alone.

Windows are simulated healthy-machine vibration, float32, three axes at 25.6 kHz, under the
default waveform spec (time, spectral and band features). Compile time is measured in fresh
processes: from start to the first feature vector with an empty Numba cache, then again with
the cache that run left.
"""

import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.featurizer import Featurizer
from edgewatch.export.bench.numpy_features import numpy_features
from edgewatch.export.bench.timing import interleaved_medians, steady_heap
from edgewatch.sim.machine import Machine, simulate_waveform

SAMPLE_RATE = 25600.0
CHANNELS = 3
SIZES = (1024, 4096)
# Windows per timed call: half a megabyte of float32, so a batch stays in cache as windows fresh
# from the ring buffers do, and no candidate pays for memory traffic the others avoid.
SAMPLES_PER_BATCH = 1 << 17

_FIRST_VECTOR = """
import numpy as np
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.featurizer import featurize
spec = FeatureSpec(kind="waveform", sample_rate=25600, window=1024, channels=["x", "y", "z"])
featurize(spec, np.ones((1, 3, 1024), dtype=np.float32).cumsum(axis=-1))
print("ready", flush=True)
"""


def bench_size(n: int, rounds: int) -> dict[str, Any]:
    """Microseconds per window for one window length."""
    spec = FeatureSpec(
        kind="waveform",
        sample_rate=SAMPLE_RATE,
        window=n,
        channels=[f"axis{i}" for i in range(CHANNELS)],
    )
    count = max(SAMPLES_PER_BATCH // (n * CHANNELS), 8)
    windows = simulate_waveform(
        Machine(), duration=count * n / SAMPLE_RATE, sample_rate=SAMPLE_RATE, seed=0
    ).windows(n, n)
    featurizer = Featurizer(spec)
    singles = [w[None] for w in windows]

    def one_at_a_time() -> None:
        for window in singles:
            featurizer(window)

    medians = interleaved_medians(
        {
            "numba_us": one_at_a_time,
            "numba_batched_us": lambda: featurizer(windows),
            "numpy_us": lambda: numpy_features(spec, windows),
            "fft_only_us": lambda: np.fft.rfft(windows, axis=-1),
        },
        rounds=rounds,
        per_call=len(windows),
    )
    row: dict[str, Any] = {"n": n, "channels": CHANNELS, "features": len(spec.feature_names)}
    row.update({name: round(seconds * 1e6, 2) for name, seconds in medians.items()})
    return row


def _seconds_to_first_vector(cache_dir: str) -> float:
    """Wall time from spawning a fresh interpreter to its first feature vector."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    start = time.perf_counter()
    with subprocess.Popen(
        [sys.executable, "-c", _FIRST_VECTOR], env=env, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        line = child.stdout.readline()
        elapsed = time.perf_counter() - start
    if line.strip() != "ready" or child.returncode != 0:
        raise RuntimeError(f"the compile-time probe failed (exit {child.returncode})")
    return elapsed


def bench_compile(warm_runs: int = 3) -> dict[str, float]:
    """Seconds to the first feature vector in a fresh process: cold cache, then warm (median)."""
    with tempfile.TemporaryDirectory(prefix="edgewatch-numba-") as cache:
        cold = _seconds_to_first_vector(cache)
        warm = sorted(_seconds_to_first_vector(cache) for _ in range(warm_runs))
    return {"cold_s": round(cold, 3), "warm_s": round(warm[len(warm) // 2], 3)}


def run(rounds: int = 30) -> dict[str, Any]:
    """The whole kernel benchmark, as ``--json`` prints it."""
    steady_heap()
    return {"kernels": [bench_size(n, rounds) for n in SIZES], "compile": bench_compile()}


def render(result: dict[str, Any]) -> str:
    """The benchmark as a table a person reads."""
    lines = [
        f"featurizer speed: {CHANNELS} axes, float32, {SAMPLE_RATE / 1000:g} kHz; "
        "microseconds per window (median)",
        f"{'N':>6} {'features':>8} {'numba':>8} {'batched':>8} {'numpy':>8} {'fft only':>9} "
        f"{'numpy/numba':>12} {'numba/fft':>10}",
    ]
    lines.extend(
        f"{r['n']:>6} {r['features']:>8} {r['numba_us']:>8.1f} {r['numba_batched_us']:>8.1f} "
        f"{r['numpy_us']:>8.1f} {r['fft_only_us']:>9.1f} "
        f"{r['numpy_us'] / r['numba_us']:>11.1f}x {r['numba_us'] / r['fft_only_us']:>9.2f}x"
        for r in result["kernels"]
    )
    c = result["compile"]
    lines.append(
        f"fresh process to first feature vector: {c['cold_s']:.2f} s with an empty Numba cache, "
        f"{c['warm_s']:.2f} s with a warm one"
    )
    return "\n".join(lines)
