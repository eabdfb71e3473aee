"""``edgewatch evaluate --bundle``: a bundle's scores on labelled data, as the gateway computes
them, with point and event metrics at the bundle's warning threshold.

The data is any number of CSV or NPY files: files with a label column (``--data``), and files
whose every row is normal (``--normal``) or anomalous (``--anomalous``). Each file is featurized
on its own, as a device's stream would be, and is a group with its own figures; the pooled
figures follow. Beside the warning's false-alarm rate that the manifest expects, the evaluation
reports the rate it gave on the normal rows, and the detection rate at a chosen false-alarm
rate (``--at-far``), whose threshold is the pooled normal rows' quantile.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgewatch.agent.bundle import Bundle, Manifest, verify_bundle
from edgewatch.agent.scorer import Scorer
from edgewatch.agent.table import TimeOrder
from edgewatch.export.datasets import DataError, Dataset, features, load_csv, load_npy
from edgewatch.export.metrics import event_metrics, point_metrics
from edgewatch.export.report import write_report
from edgewatch.export.train import inputs_of

DEFAULT_AT_FAR = 0.01


@dataclass(frozen=True)
class Source:
    """A data file, and the label of all its rows (None: its label column says)."""

    path: Path
    label: int | None = None


def _seconds_per_row(manifest: Manifest, data: Dataset) -> float:
    spec = manifest.feature_spec
    if spec.kind == "waveform":
        assert spec.hop is not None and spec.sample_rate is not None
        return spec.hop / spec.sample_rate
    if data.times is not None and len(data.times) > 1:
        return float(np.median(np.diff(data.times)))
    return 1.0


def _load(source: Source, manifest: Manifest, label: str, time_order: TimeOrder) -> Dataset:
    channels = manifest.feature_spec.channels
    if source.path.suffix == ".npy":
        if source.label is None:
            raise DataError(f"{source.path}: an NPY file has no label column: give it as "
                            "--normal or --anomalous")  # fmt: skip
        data = load_npy(source.path, channels)
    else:
        column = label if source.label is None else None
        data = load_csv(source.path, channels, label=column, time_order=time_order)
    if source.label is not None:
        labels = np.full(len(data.samples), source.label, dtype=np.int8)
        data = Dataset(data.name, data.channels, data.samples, labels, data.times, data.sha256)
    return data


def _scored(bundle: Bundle, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    manifest = bundle.manifest
    inputs, labels = inputs_of(features(manifest.feature_spec, data), manifest.model.history)
    assert labels is not None
    return Scorer(bundle)(np.ascontiguousarray(inputs, dtype=np.float32)).calibrated, labels


def _group(name: str, scores: np.ndarray, labels: np.ndarray, manifest: Manifest,
           at: float) -> dict[str, Any]:  # fmt: skip
    normal, anomalous = scores[labels == 0], scores[labels == 1]
    warning = manifest.thresholds.warning
    both = len(normal) and len(anomalous)
    point = point_metrics(scores, labels, warning) if both else {}
    return {
        "group": name,
        "rows": len(labels),
        "anomalous": len(anomalous),
        "far": float((normal > warning).mean()) if len(normal) else float("nan"),
        "expected_far": 10.0**-warning,
        "recall": float((anomalous > warning).mean()) if len(anomalous) else float("nan"),
        "roc_auc": point.get("roc_auc", float("nan")),
        "recall_at_far": float((anomalous > at).mean()) if len(anomalous) else float("nan"),
    }


def evaluate_bundle(
    bundle_path: Path,
    sources: list[Source],
    label: str = "anomaly",
    report: Path | None = None,
    at_far: float = DEFAULT_AT_FAR,
    time_order: TimeOrder = "error",
) -> dict[str, Any]:
    """Metrics of the bundle at ``bundle_path`` on ``sources``: per file, and pooled."""
    if not sources:
        raise DataError("no data to evaluate on")
    if not 0 < at_far < 1:
        raise ValueError(f"--at-far must be between 0 and 1, got {at_far}")
    bundle = verify_bundle(bundle_path)
    manifest = bundle.manifest
    loaded = [_load(source, manifest, label, time_order) for source in sources]
    scored = [_scored(bundle, data) for data in loaded]
    scores = np.concatenate([s for s, _ in scored])
    labels = np.concatenate([y for _, y in scored])
    if labels.all() or not labels.any():
        raise DataError("evaluation needs both normal and anomalous rows, in one file or across "
                        "files (--normal, --anomalous)")  # fmt: skip
    at = float(np.quantile(scores[labels == 0], 1 - at_far))
    thresholds = manifest.thresholds
    step = _seconds_per_row(manifest, loaded[0])
    result = {
        "bundle": str(bundle_path),
        "data": ", ".join(str(s.path) for s in sources),
        "model": manifest.model.kind,
        "rows": len(labels),
        "warning": thresholds.warning,
        "critical": thresholds.critical,
        "at_far": at_far,
        "point": point_metrics(scores, labels, thresholds.warning),
        "events": event_metrics(scores > thresholds.warning, labels, step),
        "groups": [
            _group(data.name, s, y, manifest, at)
            for data, (s, y) in zip(loaded, scored, strict=True)
        ],
        "pooled": _group("pooled", scores, labels, manifest, at),
    }
    if report is not None:
        result["report"] = str(write_report(report, result, scores, labels, step))
    return result


def render(result: dict[str, Any]) -> str:
    point, events = result["point"], result["events"]
    lines = [
        f"{result['model']} on {result['data']}: {result['rows']} rows, warning at "
        f"{result['warning']:.2f}",
        "  ".join(
            f"{k} {point[k]:.3f}" for k in ("precision", "recall", "f1", "roc_auc", "pr_auc")
        ),
        f"FAR {point['far']:.2%}  MAR {point['mar']:.2%}  TP {point['tp']:.0f}  FP "
        f"{point['fp']:.0f}  FN {point['fn']:.0f}  TN {point['tn']:.0f}",
        f"events: {events['events_detected']:.0f} of {events['events']:.0f} detected, median delay "
        f"{events['detection_delay_s_median']:.1f} s; {events['false_alert_events']:.0f} false "
        "alert events",
        f"{'group':<24}{'rows':>8}{'anomalous':>10}{'FAR':>9}{'expected':>9}{'recall':>8}"
        f"{'ROC-AUC':>9}{'recall @ ' + format(result['at_far'], '.1%') + ' FAR':>20}",
    ]
    lines += [
        f"{g['group'][:23]:<24}{g['rows']:>8}{g['anomalous']:>10}{_pct(g['far']):>9}"
        f"{_pct(g['expected_far']):>9}{_pct(g['recall']):>8}{g['roc_auc']:>9.3f}"
        f"{_pct(g['recall_at_far']):>20}"
        for g in [*result["groups"], result["pooled"]]
    ]
    if "report" in result:
        lines.append(f"report: {result['report']}")
    return "\n".join(lines)


def _pct(value: float) -> str:
    return "-" if value != value else f"{value:.2%}"
