"""``edgewatch bench scoring``: how fast each model scores feature rows on this machine.

All models are trained in the run on the same features: the default waveform spec for three
axes of 25.6 kHz vibration from a simulated healthy machine (60 features per row). One-row
latency is timed call by call, in runs of 100 calls interleaved across models, for p50 and p99;
throughput is rows per second in batches of 256. onnxruntime runs on one intra-op thread, as on
a gateway.
"""

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.featurizer import featurize
from edgewatch.agent.graph import INPUT
from edgewatch.agent.scorer import open_session
from edgewatch.export.bench.timing import interleaved_samples, steady_heap
from edgewatch.export.detectors.forest import IsolationForestDetector
from edgewatch.export.detectors.neural import AutoencoderDetector
from edgewatch.export.detectors.params import AutoencoderParams, IsolationForestParams
from edgewatch.sim.machine import Machine, simulate_waveform

SAMPLE_RATE = 25600.0
WINDOW = 1024
BATCH = 256
ROWS = 4096
CALLS = 100


def _rows() -> np.ndarray:
    spec = FeatureSpec(
        kind="waveform", sample_rate=SAMPLE_RATE, window=WINDOW, channels=["x", "y", "z"]
    )
    duration = (ROWS + 1) * WINDOW / 2 / SAMPLE_RATE
    run = simulate_waveform(Machine(), duration, SAMPLE_RATE, seed=0)
    return featurize(spec, run.windows(WINDOW, WINDOW // 2))[:ROWS]


def _onnx(model: Any) -> Callable[[np.ndarray], object]:
    session = open_session(model.SerializeToString())
    outputs = ["score"]
    return lambda rows: session.run(outputs, {INPUT: rows})


def run(rounds: int = 2000) -> dict[str, Any]:
    """Latency percentiles and batch throughput per model."""
    steady_heap()
    rows = _rows()
    width = rows.shape[1]
    forest = IsolationForestDetector(IsolationForestParams())
    forest.fit(rows)
    legacy = copy.copy(forest)  # the same fitted forest, through skl2onnx
    legacy.params = IsolationForestParams(converter="skl2onnx")
    autoencoder = AutoencoderDetector(AutoencoderParams(epochs=20))
    autoencoder.fit(rows)
    scorers = {
        "isolation_forest_compact": _onnx(forest.to_onnx(width)),
        "isolation_forest_skl2onnx": _onnx(legacy.to_onnx(width)),
        "sklearn_isolation_forest": forest.model.score_samples,
        "autoencoder": _onnx(autoencoder.to_onnx(width)),
    }
    one = [rows[i : i + 1] for i in range(64)]
    batches = [rows[i : i + BATCH] for i in range(0, ROWS - BATCH + 1, BATCH)]
    counter = {"one": 0, "batch": 0}

    def single(score: Callable[[np.ndarray], object]) -> Callable[[], object]:
        def call() -> object:
            counter["one"] += 1
            return score(one[counter["one"] % len(one)])

        return call

    def batched(score: Callable[[np.ndarray], object]) -> Callable[[], object]:
        def call() -> object:
            counter["batch"] += 1
            return score(batches[counter["batch"] % len(batches)])

        return call

    latency = interleaved_samples(
        {k: single(s) for k, s in scorers.items()}, max(rounds // CALLS, 1), 1, CALLS
    )
    throughput = interleaved_samples(
        {k: batched(s) for k, s in scorers.items()}, max(rounds // 20, 5), BATCH
    )
    results = [
        {
            "model": name,
            "p50_us": float(np.percentile(latency[name], 50) * 1e6),
            "p99_us": float(np.percentile(latency[name], 99) * 1e6),
            "batch256_rows_per_s": float(1 / np.median(throughput[name])),
        }
        for name in scorers
    ]
    return {"scoring": results, "features": width, "calls": rounds}


def render(result: dict[str, Any]) -> str:
    rows = {r["model"]: r for r in result["scoring"]}
    compact = rows["isolation_forest_compact"]
    lines = [
        f"one-row latency over {result['calls']} calls per model, in interleaved runs of {CALLS}; "
        f"{result['features']} "
        "features per row; throughput in batches of 256",
        f"{'model':<28}{'p50 us':>10}{'p99 us':>10}{'rows/s (batch 256)':>22}",
    ]
    lines += [
        f"{r['model']:<28}{r['p50_us']:>10.1f}{r['p99_us']:>10.1f}{r['batch256_rows_per_s']:>22,.0f}"
        for r in result["scoring"]
    ]
    for other in ("isolation_forest_skl2onnx", "sklearn_isolation_forest"):
        ratio = rows[other]["p50_us"] / compact["p50_us"]
        lines.append(f"compact IsolationForest is {ratio:.0f}x faster than {other} (p50)")
    return "\n".join(lines)
