"""An evaluation report: Markdown with PNG plots of the score timeline, ROC and PR curves."""

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from edgewatch.export.metrics import runs


def timeline(
    path: Path, scores: np.ndarray, labels: np.ndarray, step: float, result: dict[str, Any]
) -> None:
    """The calibrated score over time, labelled intervals shaded, thresholds drawn."""
    t = np.arange(len(scores)) * step
    fig, ax = plt.subplots(figsize=(11, 3.5), layout="constrained")
    for a, b in runs(labels):
        ax.axvspan(t[a], t[b - 1] + step, color="tab:red", alpha=0.15, lw=0)
    ax.plot(t, scores, lw=0.8, color="tab:blue", label="score")
    ax.axhline(result["warning"], color="tab:orange", ls="--", lw=1, label="warning")
    ax.axhline(result["critical"], color="tab:red", ls="--", lw=1, label="critical")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("calibrated score")
    ax.legend(loc="upper left", ncols=3, fontsize="small")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curves(
    roc_path: Path, pr_path: Path, scores: np.ndarray, labels: np.ndarray, result: dict[str, Any]
) -> None:
    fpr, tpr, _ = roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), layout="constrained")
    ax.plot(fpr, tpr, label=f"ROC-AUC {result['point']['roc_auc']:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
    ax.set_xlabel("false-alarm rate")
    ax.set_ylabel("recall")
    ax.legend(loc="lower right")
    fig.savefig(roc_path, dpi=110)
    plt.close(fig)
    precision, recall, _ = precision_recall_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), layout="constrained")
    ax.plot(recall, precision, label=f"PR-AUC {result['point']['pr_auc']:.3f}")
    ax.axhline(float(np.mean(labels)), color="grey", lw=0.5)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.legend(loc="lower left")
    fig.savefig(pr_path, dpi=110)
    plt.close(fig)


def write_report(
    folder: Path, result: dict[str, Any], scores: np.ndarray, labels: np.ndarray, step: float
) -> Path:
    """``report.md`` and its plots in ``folder``; returns the Markdown file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    timeline(folder / "timeline.png", scores, labels, step, result)
    curves(folder / "roc.png", folder / "pr.png", scores, labels, result)
    point, events = result["point"], result["events"]
    metrics = "\n".join(
        f"| {name} | {point[key]:.3f} |"
        for name, key in (
            ("precision", "precision"),
            ("recall", "recall"),
            ("F1", "f1"),
            ("ROC-AUC", "roc_auc"),
            ("PR-AUC", "pr_auc"),
            ("false-alarm rate", "far"),
            ("missed-alarm rate", "mar"),
        )
    )
    text = f"""# Evaluation of {result["model"]}

Bundle `{result["bundle"]}` on `{result["data"]}`: {result["rows"]} rows, flagged above the
warning threshold {result["warning"]:.2f} on the calibrated scale.

| metric | value |
|---|---|
{metrics}

Confusion: TP {point["tp"]:.0f}, FP {point["fp"]:.0f}, FN {point["fn"]:.0f}, TN {point["tn"]:.0f}.

Events: {events["events_detected"]:.0f} of {events["events"]:.0f} detected; median detection
delay {events["detection_delay_s_median"]:.1f} s (longest {events["detection_delay_s_max"]:.1f} s);
{events["false_alert_events"]:.0f} false alert events.

![score timeline](timeline.png)

![ROC curve](roc.png) ![PR curve](pr.png)
"""
    path = folder / "report.md"
    path.write_text(text)
    return path
