"""The SKAB outlier-detection protocol, as its published leaderboard runs it.

For each of the 34 labelled files: fit a model on the first 400 rows, score the rest, and flag
the rows that the agent's decision policy (``agent.decision``) alerts on, with a threshold chosen
on those 400 training rows alone. TP, FP, FN and TN are pooled over all files before F1
(``TP / (TP + (FP + FN) / 2)``), FAR and MAR are computed. Scores are onnxruntime's, from the
exported model the gateway would run, and each export passes the parity gate against its native
model. Rows go through ``agent.features``: ``record`` features are the eight sensor values
themselves, ``process`` features add their rolling statistics.

The plain methods use all eight sensors as they are, with the library's default settings, and
flag every row above the threshold. A tuned method's settings are the choice of its grid
(``GRIDS``, run by ``tune``) on the files at even positions of ``load_skab``'s order
(valve1/0.csv, valve1/2.csv, ...): the best F1 among the settings that kept FAR at most 15 % and
MAR at most 25 % there. Every result also reports the 17 files at odd positions, which took no
part in that choice.

What the tuning found: the two temperatures (motor body and fluid) drift through every run, so
400 rows cannot show their normal range and they raise false alarms whatever the model; without
them, the smoothed levels (``ewma``) of the other six sensors separate faults from normal rows.
An alert needs 150 rows above the threshold and is dated from the first. Most false alarms that
remain follow a fault: the pump settles a little away from its state before it, so the score
falls from its peak but stays above the threshold. The ``release`` rule ends such an alert.
"""

import re
from dataclasses import dataclass, fields, replace
from itertools import product
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgewatch.agent.bundle import Bundle
from edgewatch.agent.calibration import fit_scale
from edgewatch.agent.decision import Decider, Policy
from edgewatch.agent.decision_settings import Decision
from edgewatch.agent.features import FeatureSpec, Rolling
from edgewatch.agent.featurizer import featurize
from edgewatch.agent.model import policy, sequences
from edgewatch.agent.onsite.learn import learn
from edgewatch.agent.onsite.settings import Learning
from edgewatch.agent.scorer import Scorer
from edgewatch.export.datasets import SKAB_CHANNELS, Dataset, load_skab
from edgewatch.export.detectors import build
from edgewatch.export.detectors.base import Progress, quiet
from edgewatch.export.detectors.params import (
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
from edgewatch.export.metrics import Confusion
from edgewatch.export.parity import export_checked
from edgewatch.export.skab_loop import LOOPS, Loop, loop_flags

TRAIN_ROWS = 400
SOURCE = "SOURCE.md"
STEADY_CHANNELS = tuple(c for c in SKAB_CHANNELS if c not in ("Temperature", "Thermocouple"))


@dataclass(frozen=True)
class Method:
    """A detector with its features and decision rule for the protocol.

    Rows are flagged as the agent's decision policy would alert on them: a row is high when its
    score is above the training rows' calibrated ``level`` (2: one training row in a hundred scores
    above it), an alert needs a run of ``min_rows`` high rows and covers it from its first row,
    and ``release`` ends an alert whose score has fallen back most of the way from its peak
    (``agent.decision``). ``channels`` picks sensors; ``rolling`` picks the process statistics.
    """

    params: DetectorParams
    features: Literal["record", "process"] = "record"
    level: float = 2.0
    min_rows: int = 1
    release: float = 0.0
    channels: tuple[str, ...] = SKAB_CHANNELS
    rolling: tuple[Rolling, ...] | None = None
    ewma_alpha: float | None = None


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
    "kmeans_ewma": Method(
        KmeansParams(n_clusters=1),
        features="process",
        level=1.5,
        min_rows=150,
        release=0.1,
        channels=STEADY_CHANNELS,
        rolling=("ewma",),
        ewma_alpha=0.1,
    ),
}


# Learned on site with each detector's defaults: no setting here was chosen on SKAB.
ON_SITE = {
    "on_site": Learning(),
    "on_site_pca_t2q": Learning(detector="pca_t2q"),
    "on_site_kmeans": Learning(detector="kmeans"),
}


def _spec(method: Method) -> FeatureSpec:
    if method.features == "record":
        return FeatureSpec(kind="record", channels=method.channels)
    return FeatureSpec(
        kind="process",
        channels=method.channels,
        rolling=method.rolling,
        ewma_alpha=method.ewma_alpha,
    )


def alerted(scores: np.ndarray, method: Method) -> np.ndarray:
    """The rows that the agent's alerts cover when its decision policy takes these calibrated
    scores at one row a second: from the first row of each alert's run up to the row that clears
    it. With no ``release``, these are the runs of rows above ``level`` that last ``min_rows``.

    >>> scores = np.array([3, 3, 0, 3, 3, 3, 0], dtype=float)
    >>> alerted(scores, Method(KmeansParams(), min_rows=3)).astype(int).tolist()
    [0, 0, 0, 1, 1, 1, 0]
    """
    policy = Policy(
        warning=method.level,
        critical=method.level,
        min_duration_s=method.min_rows - 1,
        release=method.release,
    )
    return covered(policy, scores)


def covered(policy: Policy, scores: np.ndarray) -> np.ndarray:
    """The rows that alerts cover when ``policy`` decides on ``scores``, one row a second."""
    flags = np.zeros(len(scores), dtype=bool)
    opened: int | None = None
    for step in Decider(policy).steps(np.arange(len(scores), dtype=np.float64), scores):
        if step.state == "raised":
            opened = int(step.started_at)
        elif step.state == "cleared":
            flags[opened : int(step.ts)] = True
            opened = None
    if opened is not None:
        flags[opened:] = True
    return flags


def on_site_flags(settings: Learning, data: Dataset) -> np.ndarray:
    """The test rows the agent alerts on when it learns a file's first 400 rows on site, as a
    machine without a bundle does, then scores the rest: all eight sensors, the default process
    features, and the default decision settings of an agent config."""
    spec = FeatureSpec(kind="process", channels=SKAB_CHANNELS)
    columns = [data.channels.index(c) for c in spec.channels]
    rows = featurize(spec, np.ascontiguousarray(data.samples[:, columns]))
    learned = learn(rows[:TRAIN_ROWS], spec, settings, name="skab")
    scorer = Scorer(Bundle(learned.manifest, learned.files, signed=False, manifest_sha256=""))
    scores = scorer(rows[TRAIN_ROWS:]).calibrated
    return covered(policy(Decision(), learned.manifest.thresholds, spec), scores)


def calibrated_scores(method: Method, data: Dataset, progress: Progress = quiet) -> np.ndarray:
    """Fit on the file's first 400 rows; the scores of the exported model, calibrated on those
    rows by their empirical quantiles alone (no fitted tail), as the protocol was tuned. The
    last ``len(data.samples) - 400`` scores are the test rows'."""
    columns = [data.channels.index(c) for c in method.channels]
    rows = featurize(_spec(method), np.ascontiguousarray(data.samples[:, columns]))
    detector = build(method.params)
    inputs = sequences(rows, detector.history)
    first_test = TRAIN_ROWS - detector.history + 1
    detector.fit(inputs[:first_test], progress)
    scores = export_checked(detector, rows.shape[1], inputs).exported
    return fit_scale(scores[:first_test], tail=False)(scores)


def outcome(method: Method, scores: np.ndarray, data: Dataset) -> Confusion:
    """The test rows' outcomes when ``method`` decides on a file's calibrated ``scores``."""
    if data.labels is None:
        raise ValueError(f"{data.name}: SKAB files carry an anomaly column")
    test = data.labels[TRAIN_ROWS:]
    return Confusion.of(alerted(scores, method)[len(scores) - len(test) :], test)


def run_file(
    method: Method | Learning | Loop, data: Dataset, progress: Progress = quiet
) -> Confusion:
    """Fit on the file's first 400 rows, or learn them on site (and close the loop), and
    count the test rows' outcomes."""
    if isinstance(method, Method):
        return outcome(method, calibrated_scores(method, data, progress), data)
    if data.labels is None:
        raise ValueError(f"{data.name}: SKAB files carry an anomaly column")
    if isinstance(method, Loop):
        return Confusion.of(loop_flags(method, data, TRAIN_ROWS)[0], data.labels[TRAIN_ROWS:])
    return Confusion.of(on_site_flags(method, data), data.labels[TRAIN_ROWS:])


def run(
    root: Path,
    names: list[str],
    limit: int | None = None,
    progress: Progress = quiet,
) -> dict[str, Any]:
    """Our rows for the methods ``names`` on the first ``limit`` files (all 34 by default),
    and the published leaderboard beside them."""
    methods: dict[str, Method | Learning | Loop] = {**METHODS, **ON_SITE, **LOOPS}
    unknown = [n for n in names if n not in methods]
    if unknown:
        raise ValueError(f"unknown SKAB method {', '.join(unknown)}; choose from {list(methods)}")
    files = load_skab(root)[:limit]
    rows = []
    for name in names:
        outcomes = []
        for i, data in enumerate(files):
            progress(f"skab: {name}: {data.name} ({i + 1}/{len(files)})")
            outcomes.append(run_file(methods[name], data))
        total = sum(outcomes, Confusion(0, 0, 0, 0))
        held_out = sum(outcomes[1::2], Confusion(0, 0, 0, 0))
        rows.append({**_row(name, total), "held_out": _row(name, held_out)})
    return {
        "protocol": "skab",
        "files": len(files),
        "rows": rows,
        "leaderboard": leaderboard(root / SOURCE),
    }


@dataclass(frozen=True)
class Grid:
    """The settings tried for a tuned method: every combination, on the tuning files."""

    ewma_alpha: tuple[float, ...]
    level: tuple[float, ...]
    min_rows: tuple[int, ...]
    release: tuple[float, ...]

    def methods(self, base: Method) -> list[list[Method]]:
        """The combinations, grouped by the features they score."""
        return [
            [
                replace(base, ewma_alpha=alpha, level=level, min_rows=rows, release=release)
                for level, rows, release in product(self.level, self.min_rows, self.release)
            ]
            for alpha in self.ewma_alpha
        ]


GRIDS: dict[str, Grid] = {
    "kmeans_ewma": Grid(
        ewma_alpha=(0.05, 0.1, 0.2),
        level=(1.5, 2.0, 2.5, 3.0),
        min_rows=(30, 60, 90, 120, 150, 180),
        release=(0.0, 0.05, 0.1, 0.2, 0.3),
    ),
}
GRID_KEYS = tuple(f.name for f in fields(Grid))
MAX_FAR = 0.15
MAX_MAR = 0.25


def tune(
    root: Path, name: str, limit: int | None = None, progress: Progress = quiet
) -> dict[str, Any]:
    """Every setting of ``GRIDS[name]`` on the tuning files (even positions among the first
    ``limit``), and the one chosen: the best F1 among those with FAR and MAR within the
    targets there. Ties go to the first in the grid's order."""
    if name not in GRIDS:
        raise ValueError(f"no tuning grid for SKAB method {name}; choose from {list(GRIDS)}")
    files = load_skab(root)[:limit][::2]
    rows, totals = [], []
    for group in GRIDS[name].methods(METHODS[name]):
        scores = []
        for data in files:
            progress(f"skab: tuning {name}: ewma_alpha {group[0].ewma_alpha}: {data.name}")
            scores.append(calibrated_scores(group[0], data))
        for method in group:
            total = sum(
                (outcome(method, s, d) for s, d in zip(scores, files, strict=True)),
                Confusion(0, 0, 0, 0),
            )
            settings = {k: getattr(method, k) for k in GRID_KEYS}
            within = total.far <= MAX_FAR and total.mar <= MAX_MAR
            rows.append({**settings, **_row(name, total, digits=4), "within_targets": within})
            totals.append(total)
    eligible = [i for i, r in enumerate(rows) if r["within_targets"]]
    chosen = max(eligible, key=lambda i: totals[i].f1, default=None)
    return {
        "protocol": "skab",
        "tuning": name,
        "files": [d.name for d in files],
        "grid": rows,
        "chosen": None if chosen is None else rows[chosen],
    }


def render_tuning(result: dict[str, Any], top: int = 10) -> str:
    """The chosen setting and the best of the grid by F1 among those within the targets."""
    rows = result["grid"]
    eligible = [r for r in rows if r["within_targets"]]
    lines = [
        f"SKAB tuning of {result['tuning']} on the files at even positions "
        f"({len(result['files'])}): "
        f"{len(rows)} settings, {len(eligible)} with FAR <= {100 * MAX_FAR:g} % and "
        f"MAR <= {100 * MAX_MAR:g} %",
        f"{'ewma_alpha':>10}{'level':>7}{'min_rows':>9}{'release':>8}{'F1':>7}{'FAR %':>8}"
        f"{'MAR %':>8}",
    ]
    lines.extend(
        f"{r['ewma_alpha']:>10g}{r['level']:>7g}{r['min_rows']:>9}{r['release']:>8g}"
        f"{r['f1']:>7.3f}{r['far_pct']:>8.2f}{r['mar_pct']:>8.2f}"
        for r in sorted(eligible, key=lambda r: -r["f1"])[:top]
    )
    chosen = result["chosen"]
    lines.append(
        "chosen: none is within the targets"
        if chosen is None
        else "chosen: " + ", ".join(f"{k} {chosen[k]:g}" for k in GRID_KEYS)
    )
    return "\n".join(lines)


def _row(name: str, c: Confusion, digits: int = 2) -> dict[str, Any]:
    """A result row, with F1 rounded as the leaderboard does unless told otherwise."""
    return {
        "model": name,
        "f1": round(c.f1, digits),
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
        f"SKAB outlier detection, {result['files']} files, pooled over their test parts; "
        "held out: the files at odd positions only",
        f"{'':<11}{'model':<28}{'F1':>6}{'FAR %':>9}{'MAR %':>9}   held out: F1, FAR %, MAR %",
    ]
    for source, r in sorted(ours + theirs, key=lambda item: -item[1]["f1"]):
        line = (
            f"{source:<11}{r['model']:<28}{r['f1']:>6.2f}{r['far_pct']:>9.2f}{r['mar_pct']:>9.2f}"
        )
        if "held_out" in r:
            h = r["held_out"]
            line += f"   {h['f1']:.2f}, {h['far_pct']:.2f}, {h['mar_pct']:.2f}"
        lines.append(line)
    return "\n".join(lines)
