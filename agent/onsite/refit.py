"""A learned device fitted again with its operator's labels: its baseline on disk and the
windows labelled ``normal`` (``agent.onsite.labelled``), under the same checks as its first fit
and one more: every window labelled ``anomaly`` must still score above the new warning level.
The candidate is written beside the bundle in use (the learner puts it in its place, or on
trial, once it has passed); until then, and when it fails, the old model keeps scoring.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgewatch.agent.config import Machine
from edgewatch.agent.model import Model
from edgewatch.agent.onsite import folders, labelled
from edgewatch.agent.onsite.baseline import Baseline
from edgewatch.agent.onsite.folders import CANDIDATE
from edgewatch.agent.onsite.learn import learn


class RefitError(ValueError):
    """A re-fit that did not pass, and why."""


@dataclass(frozen=True)
class Refitted:
    """The re-fitted model; how many labelled windows it used, and how many of those labelled
    normal it still scores above its warning."""

    model: Model
    normal: int
    anomaly: int
    still_alerting: int

    def event(self, device: str) -> dict[str, object]:
        thresholds = self.model.bundle.manifest.thresholds
        return {
            "event": "refit",
            "device": device,
            "labelled_normal": self.normal,
            "labelled_anomaly": self.anomaly,
            "normal_still_alerting": self.still_alerting,
            "warning": thresholds.warning,
            "expected_warning_far": thresholds.expected_warning_far,
        }


def refit(folder: Path, machine: Machine, name: str, threads: int) -> Refitted:
    """The device in ``folder`` re-fitted, its new bundle written to ``folder / CANDIDATE``;
    ``RefitError`` (or the first fit's errors) when it cannot be, and then no candidate is
    left."""
    spec, settings = machine.features, machine.learn
    assert spec is not None and settings is not None
    baseline = Baseline(folder, spec, settings)
    if baseline.count < settings.rows_needed():
        raise RefitError(
            f"its baseline on disk holds {baseline.count} rows, and a re-fit needs "
            f"{settings.rows_needed()}: relearn it"
        )
    width = len(spec.feature_names)
    normal = labelled.read(folder, "normal", width)
    anomaly = labelled.read(folder, "anomaly", width)
    learned = learn(baseline.matrix(), spec, settings, name=name, normal=normal)
    model = folders.candidate(folder, learned, machine.decision, threads)
    missed = int((_scores(model, anomaly) <= model.policy.warning).sum())
    if missed:
        shutil.rmtree(folder / CANDIDATE, ignore_errors=True)
        raise RefitError(
            f"it would score {missed} of the {len(anomaly)} windows labelled anomaly below "
            "its warning level"
        )
    still = int((_scores(model, normal) > model.policy.warning).sum())
    return Refitted(model, len(normal), len(anomaly), still)


def _scores(model: Model, rows: np.ndarray) -> np.ndarray:
    return model.scorer(rows).calibrated if len(rows) else np.empty(0, np.float32)
