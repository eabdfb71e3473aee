"""``edgewatch bench learning``: what learning on site costs and whether its promise holds.

- **fit_s**: one on-site fit (fit, ONNX, parity, calibration) of 100,000 rows of 60 features,
  per detector, the median of ``rounds``. The budget is 2 s.
- **overhead**: the pipeline's CPU time per block of a process sensor while it learns (its rows
  featurized and kept), as a ratio to the same blocks scored by the model it learned, in the
  same run. The budget is 1.10.
- **rss_mb**: ``edgewatch run`` once twenty machines have each learned on site
  (``export.bench.footprint``). The budget is 180 MB.
- **calibration**: out-of-sample false alarms. Each detector learns a simulated healthy machine
  (process and waveform, three seeds each) and scores another healthy run of it that it never
  saw; the share of windows above the warning level, which promises 1 %.

``bench gateway`` (``export.bench.gateway``) runs many learning machines in one pipeline.
"""

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgewatch.agent.bundle import Bundle
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.featurizer import recording_features
from edgewatch.agent.framing import Block
from edgewatch.agent.onsite.detectors import Kind
from edgewatch.agent.onsite.learn import learn
from edgewatch.agent.onsite.settings import Learning
from edgewatch.agent.pipeline import Pipeline
from edgewatch.agent.scorer import Scorer
from edgewatch.export.bench import gateway
from edgewatch.export.bench.footprint import MACHINES, machines_footprint
from edgewatch.sim.machine import PROCESS_CHANNELS, Machine, simulate_process, simulate_waveform

KINDS: tuple[Kind, ...] = ("gaussian", "pca_t2q", "kmeans")
RATE = 25600.0
WAVEFORM = FeatureSpec(kind="waveform", sample_rate=RATE, window=1024, channels=["x", "y", "z"])
PROCESS = FeatureSpec(kind="process", channels=PROCESS_CHANNELS)


def fit_seconds(rounds: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    rows = (rng.normal(size=(100_000, 60)) @ rng.normal(size=(60, 60))).astype(np.float32)
    spec = FeatureSpec(kind="record", channels=[f"f{i}" for i in range(60)])
    found = {}
    for kind in KINDS:
        times = []
        for _ in range(rounds):
            began = time.perf_counter()
            learn(rows, spec, Learning(detector=kind))
            times.append(time.perf_counter() - began)
        found[kind] = statistics.median(times)
    return found


def _learned(kind: Kind, spec: FeatureSpec, samples: np.ndarray) -> Bundle:
    rows = recording_features(spec, samples)
    made = learn(rows, spec, Learning(detector=kind))
    return Bundle(made.manifest, made.files, signed=False, manifest_sha256="")


def calibration(seeds: tuple[int, ...] = (1, 2, 3)) -> dict[str, dict[str, float]]:
    """The median, over seeds, of the share of new healthy windows above the warning level."""
    found: dict[str, dict[str, float]] = {}
    for name, spec, run in (
        ("process", PROCESS, lambda seed: simulate_process(4 * 3600, seed).rows),
        ("waveform", WAVEFORM, lambda seed: simulate_waveform(Machine(), 120, RATE, seed).rows),
    ):
        for kind in KINDS:
            shares = []
            for seed in seeds:
                bundle = _learned(kind, spec, run(seed))
                fresh = recording_features(spec, run(seed + 100))
                scores = Scorer(bundle)(fresh).calibrated
                shares.append(float((scores > bundle.manifest.thresholds.warning).mean()))
            found.setdefault(name, {})[kind] = statistics.median(shares)
    return found


def overhead(rounds: int) -> float:
    """CPU per block while a process sensor learns, over CPU per block while it scores."""
    run = simulate_process(2 * 3600, 7).signal
    blocks = [
        Block("pump-1", t, 1.0, run[:, t : t + 10], PROCESS_CHANNELS) for t in range(0, 7200, 10)
    ]
    ratios = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as folder:
            pipe = gateway.machines(Path(folder), {"min_rows": 3000, "duration_s": 3600})
            learning = _cpu(pipe, blocks[:360])
            pipe.process(blocks[360:361])
            scoring = _cpu(pipe, blocks[361:])
        ratios.append(learning / 360 / (scoring / (len(blocks) - 361)))
    return statistics.median(ratios)


def _cpu(pipe: Pipeline, blocks: list[Block]) -> float:
    began = time.process_time()
    for block in blocks:
        pipe.process([block])
    return time.process_time() - began


def render(result: dict[str, Any]) -> str:
    lines = ["on-site fit of 100,000 rows x 60 features (median, budget 2 s):"]
    lines += [f"  {kind:<10}{s:>8.2f} s" for kind, s in result["fit_s"].items()]
    lines.append(
        f"CPU per block while learning / while scoring: {result['overhead']:.2f} (budget 1.10)"
    )
    lines.append(
        "new healthy windows above the warning level, which promises 1 % (median of 3 seeds):"
    )
    for machine, shares in result["calibration"].items():
        lines.append(f"  {machine:<10}" + "  ".join(f"{k} {v:.2%}" for k, v in shares.items()))
    lines.append(
        f"edgewatch run with {MACHINES} machines, {result['machines_learned']} learned on site: "
        f"{result['rss_mb']:.0f} MB resident (budget 180 MB)"
    )
    return "\n".join(lines)


def run(rounds: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        rss, learned = machines_footprint(Path(folder))
    return {
        "fit_s": fit_seconds(rounds),
        "overhead": overhead(rounds),
        "calibration": calibration(),
        "rss_mb": rss,
        "machines_learned": learned,
    }
