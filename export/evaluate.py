"""``edgewatch evaluate --bundle``: a bundle's scores on labelled data, as the gateway computes
them, with point and event metrics at the bundle's warning threshold."""

from pathlib import Path
from typing import Any

import numpy as np

from edgewatch.agent.bundle import Manifest, verify_bundle
from edgewatch.agent.scorer import Scorer
from edgewatch.export.datasets import DataError, Dataset, features, load_csv
from edgewatch.export.metrics import event_metrics, point_metrics
from edgewatch.export.report import write_report
from edgewatch.export.train import inputs_of


def _seconds_per_row(manifest: Manifest, data: Dataset) -> float:
    spec = manifest.feature_spec
    if spec.kind == "waveform":
        assert spec.hop is not None and spec.sample_rate is not None
        return spec.hop / spec.sample_rate
    if data.times is not None and len(data.times) > 1:
        return float(np.median(np.diff(data.times)))
    return 1.0


def evaluate_bundle(
    bundle_path: Path, data_path: Path, label: str, report: Path | None = None
) -> dict[str, Any]:
    """Metrics of the bundle at ``bundle_path`` on the labelled CSV at ``data_path``."""
    bundle = verify_bundle(bundle_path)
    manifest = bundle.manifest
    data = load_csv(data_path, manifest.feature_spec.channels, label=label)
    inputs, labels = inputs_of(features(manifest.feature_spec, data), manifest.model.history)
    if labels is None or labels.all() or not labels.any():
        raise DataError(f"{data_path}: evaluation needs both normal and anomalous rows")
    scores = Scorer(bundle)(np.ascontiguousarray(inputs, dtype=np.float32))
    thresholds = manifest.thresholds
    step = _seconds_per_row(manifest, data)
    result = {
        "bundle": str(bundle_path),
        "data": str(data_path),
        "model": manifest.model.kind,
        "rows": len(labels),
        "warning": thresholds.warning,
        "critical": thresholds.critical,
        "point": point_metrics(scores.calibrated, labels, thresholds.warning),
        "events": event_metrics(scores.calibrated > thresholds.warning, labels, step),
    }
    if report is not None:
        result["report"] = str(write_report(report, result, scores.calibrated, labels, step))
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
    ]
    if "report" in result:
        lines.append(f"report: {result['report']}")
    return "\n".join(lines)
