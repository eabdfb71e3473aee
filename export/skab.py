"""The SKAB outlier-detection protocol, as its published leaderboard runs it.

For each of the 34 labelled files: fit a model on the first 400 rows, score the rest, flag rows
above a threshold chosen on those 400 training rows alone. TP, FP, FN and TN are pooled over all
files before F1 (``TP / (TP + (FP + FN) / 2)``), FAR and MAR are computed. Scores are
onnxruntime's, from the exported model the gateway would run, and each export passes the parity
gate against its native model. Rows go through ``agent.features``: ``record`` features are the
eight sensor values themselves, ``process`` features add their rolling statistics.

Nothing here is tuned on the test parts: every method's settings are fixed below, chosen before
the test parts were scored, and the threshold of each file comes from its training rows.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from agent.features import FeatureSpec, featurize
from agent.scorer import open_session
from export.calibrate import fit_scale
from export.datasets import SKAB_CHANNELS, Dataset, load_skab
from export.detectors import build
from export.detectors.base import Progress, quiet
from export.detectors.params import (
    AutoencoderParams,
    DetectorParams,
    EnsembleParams,
    GmmParams,
    IsolationForestParams,
    KmeansParams,
    LofParams,
    OcsvmParams,
    PcaParams,
    SequenceAutoencoderParams,
)
from export.metrics import Confusion
from export.onnxgraph import INPUT
from export.parity import compare
from export.train import sequences

TRAIN_ROWS = 400
SOURCE = "SOURCE.md"


@dataclass(frozen=True)
class Method:
    """A detector with its features and decision rule for the protocol.

    A row is flagged when its score, averaged over the last ``smooth`` rows, is above the
    training rows' calibrated ``level`` (2: one training row in a hundred scores above it).
    """

    params: DetectorParams
    features: Literal["record", "process"] = "record"
    level: float = 2.0
    smooth: int = 1


_NETWORK = {"epochs": 100, "patience": 5, "validation_split": 0.1}
METHODS: dict[str, Method] = {
    "pca_t2q": Method(PcaParams()),
    "isolation_forest": Method(IsolationForestParams()),
    "ocsvm": Method(OcsvmParams()),
    "lof": Method(LofParams()),
    "gmm": Method(GmmParams(n_components=1)),
    "kmeans": Method(KmeansParams(n_clusters=4)),
    "autoencoder": Method(AutoencoderParams(hidden=(16, 4), **_NETWORK)),
    "conv_ae": Method(SequenceAutoencoderParams(history=60, **_NETWORK)),
    "lstm_ae": Method(SequenceAutoencoderParams(architecture="lstm", history=60, **_NETWORK)),
    "ensemble": Method(EnsembleParams(members=(PcaParams(), GmmParams(n_components=1)))),
}


def _spec(method: Method) -> FeatureSpec:
    return FeatureSpec(kind=method.features, channels=SKAB_CHANNELS)


def smooth(scores: np.ndarray, rows: int) -> np.ndarray:
    """The mean of each score and the ``rows - 1`` before it (fewer at the start).

    >>> smooth(np.array([1.0, 3.0, 5.0, 7.0]), 2).tolist()
    [1.0, 2.0, 4.0, 6.0]
    """
    if rows <= 1:
        return scores
    total = np.cumsum(np.r_[0.0, scores])
    ends = np.arange(1, len(scores) + 1)
    starts = np.maximum(ends - rows, 0)
    out: np.ndarray = (total[ends] - total[starts]) / (ends - starts)
    return out


def run_file(method: Method, data: Dataset, progress: Progress = quiet) -> Confusion:
    """Fit on the file's first 400 rows and count the test rows' outcomes."""
    if data.labels is None:
        raise ValueError(f"{data.name}: SKAB files carry an anomaly column")
    rows = featurize(_spec(method), data.samples)
    detector = build(method.params)
    inputs = sequences(rows, detector.history)
    first_test = TRAIN_ROWS - detector.history + 1
    detector.fit(inputs[:first_test], progress)
    session = open_session(detector.to_onnx(rows.shape[1]).SerializeToString())
    scores = session.run(["score"], {INPUT: np.ascontiguousarray(inputs, np.float32)})[0]
    compare(detector.score(inputs), scores)
    smoothed = smooth(scores.astype(np.float64), method.smooth)
    threshold = fit_scale(smoothed[:first_test]).inverse(method.level)
    return Confusion.of(smoothed[first_test:] > threshold, data.labels[TRAIN_ROWS:])


def run(
    root: Path,
    names: list[str],
    limit: int | None = None,
    progress: Progress = quiet,
) -> dict[str, Any]:
    """Our rows for the methods ``names`` on the first ``limit`` files (all 34 by default),
    and the published leaderboard beside them."""
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown SKAB method {', '.join(unknown)}; choose from {list(METHODS)}")
    files = load_skab(root)[:limit]
    rows = []
    for name in names:
        total = Confusion(0, 0, 0, 0)
        for i, data in enumerate(files):
            progress(f"skab: {name}: {data.name} ({i + 1}/{len(files)})")
            total = total + run_file(METHODS[name], data)
        rows.append(_row(name, total))
    return {
        "protocol": "skab",
        "files": len(files),
        "rows": rows,
        "leaderboard": leaderboard(root / SOURCE),
    }


def _row(name: str, c: Confusion) -> dict[str, Any]:
    return {
        "model": name,
        "f1": round(c.f1, 2),
        "far_pct": round(100 * c.far, 2),
        "mar_pct": round(100 * c.mar, 2),
        "tp": c.tp,
        "fp": c.fp,
        "fn": c.fn,
        "tn": c.tn,
    }


def leaderboard(source: Path) -> list[dict[str, Any]]:
    """The published outlier-detection leaderboard, read from the dataset's SOURCE.md."""
    try:
        text = source.read_text()
    except OSError as e:
        raise ValueError(f"{source}: {e.strerror}; the SKAB folder should hold it") from None
    section = text.split("### Outlier detection", 1)[-1].split("###", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"[\d.]+", cells[1]):
            rows.append(
                {
                    "model": cells[0],
                    "f1": float(cells[1]),
                    "far_pct": float(cells[2]),
                    "mar_pct": float(cells[3]),
                }
            )
    if not rows:
        raise ValueError(f"{source}: no outlier-detection leaderboard table found")
    return rows


def render(result: dict[str, Any]) -> str:
    """Our rows and the published ones, in one table sorted by F1."""
    ours: list[tuple[str, dict[str, Any]]] = [("edgewatch", r) for r in result["rows"]]
    theirs: list[tuple[str, dict[str, Any]]] = [("published", r) for r in result["leaderboard"]]
    lines = [
        f"SKAB outlier detection, {result['files']} files, pooled over their test parts",
        f"{'':<11}{'model':<28}{'F1':>6}{'FAR %':>9}{'MAR %':>9}",
    ]
    for source, r in sorted(ours + theirs, key=lambda item: -item[1]["f1"]):
        lines.append(
            f"{source:<11}{r['model']:<28}{r['f1']:>6.2f}{r['far_pct']:>9.2f}{r['mar_pct']:>9.2f}"
        )
    return "\n".join(lines)
