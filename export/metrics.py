"""Evaluation: point metrics per row, and event metrics per labelled fault interval."""

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def _share(part: int, rest: int) -> float:
    """``part / (part + rest)``, 0 when both are 0."""
    return part / (part + rest) if part + rest else 0.0


@dataclass(frozen=True)
class Confusion:
    """Row counts of a 0/1 prediction against 0/1 labels."""

    tp: int
    fp: int
    fn: int
    tn: int

    @classmethod
    def of(cls, predicted: np.ndarray, labels: np.ndarray) -> "Confusion":
        p, y = np.asarray(predicted, dtype=bool), np.asarray(labels, dtype=bool)
        return cls(
            int((p & y).sum()), int((p & ~y).sum()), int((~p & y).sum()), int((~p & ~y).sum())
        )

    def __add__(self, other: "Confusion") -> "Confusion":
        return Confusion(
            *(a + b for a, b in zip(asdict(self).values(), asdict(other).values(), strict=True))
        )

    @property
    def precision(self) -> float:
        return _share(self.tp, self.fp)

    @property
    def recall(self) -> float:
        return _share(self.tp, self.fn)

    @property
    def f1(self) -> float:
        """``TP / (TP + (FP + FN) / 2)``, as SKAB computes it; 0 with no positives at all.

        >>> round(Confusion(tp=8, fp=2, fn=2, tn=88).f1, 3)
        0.8
        """
        denominator = self.tp + (self.fp + self.fn) / 2
        return self.tp / denominator if denominator else 0.0

    @property
    def far(self) -> float:
        """False-alarm rate: the share of normal rows flagged."""
        return _share(self.fp, self.tn)

    @property
    def mar(self) -> float:
        """Missed-alarm rate: the share of anomalous rows not flagged."""
        return _share(self.fn, self.tp)


def point_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall, F1, FAR, MAR and the confusion counts at ``threshold`` (a row is
    flagged when its score is above it), with ROC-AUC and PR-AUC over all thresholds."""
    confusion = Confusion.of(scores > threshold, labels)
    both = 0 < int(np.sum(labels)) < len(labels)
    return {
        "precision": confusion.precision,
        "recall": confusion.recall,
        "f1": confusion.f1,
        "far": confusion.far,
        "mar": confusion.mar,
        "roc_auc": float(roc_auc_score(labels, scores)) if both else float("nan"),
        "pr_auc": float(average_precision_score(labels, scores)) if both else float("nan"),
        **{k: float(v) for k, v in asdict(confusion).items()},
    }


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of true values.

    >>> runs(np.array([0, 1, 1, 0, 1]))
    [(1, 3), (4, 5)]
    """
    padded = np.r_[False, np.asarray(flags, dtype=bool), False]
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def event_metrics(
    predicted: np.ndarray, labels: np.ndarray, seconds_per_row: float
) -> dict[str, float]:
    """Per labelled event (a run of anomalous rows): whether a flag fell inside it and how long
    after its start the first one came; per flagged run that touches no event, a false alert."""
    predicted = np.asarray(predicted, dtype=bool)
    events = runs(labels)
    delays = []
    for start, end in events:
        hits = np.flatnonzero(predicted[start:end])
        if hits.size:
            delays.append(hits[0] * seconds_per_row)
    labelled = np.asarray(labels, dtype=bool)
    false_alerts = sum(1 for a, b in runs(predicted) if not labelled[a:b].any())
    return {
        "events": float(len(events)),
        "events_detected": float(len(delays)),
        "detection_delay_s_median": float(np.median(delays)) if delays else float("nan"),
        "detection_delay_s_max": float(np.max(delays)) if delays else float("nan"),
        "false_alert_events": float(false_alerts),
    }
