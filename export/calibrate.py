"""Calibration: put raw scores on the shared scale and choose thresholds.

Both use onnxruntime's scores on validation rows, the scores the gateway will see.
"""

import numpy as np

from edgewatch.agent.bundle import Thresholds
from edgewatch.agent.calibration import ScoreScale

LEVEL_STEP = 0.25
DEFAULT_BUDGET = (0.01, 0.001)


def fit_scale(normal: np.ndarray) -> ScoreScale:
    """Knots at the quantiles ``1 - 10**-level`` of ``normal`` scores, for levels 0, 0.25, ...
    as far as the data reaches, then the maximum at ``log10(n + 1)``.

    >>> [round(level, 4) for level in fit_scale(np.arange(1000.0)).calibrated[-3:]]
    [2.75, 3.0, 3.0004]
    """
    scores = np.sort(np.asarray(normal, dtype=np.float64))
    n = len(scores)
    if n < 2 or not np.isfinite(scores).all():
        raise ValueError(f"calibration needs at least 2 finite normal scores, got {n}")
    top = np.log10(n + 1)
    levels = np.arange(0.0, top, LEVEL_STEP)
    levels = levels[10.0**-levels >= 1.0 / n]
    raw = [*np.quantile(scores, 1 - 10.0**-levels), scores[-1]]
    calibrated = [*levels, top]
    knots_raw, knots_cal = [raw[0]], [calibrated[0]]
    for r, c in zip(raw[1:], calibrated[1:], strict=True):
        if r > knots_raw[-1]:
            knots_raw.append(r)
            knots_cal.append(c)
    if len(knots_raw) < 2:
        raise ValueError("calibration needs normal scores that are not all equal")
    return ScoreScale(raw=tuple(map(float, knots_raw)), calibrated=tuple(map(float, knots_cal)))


def budget_thresholds(
    scale: ScoreScale, normal: np.ndarray, budget: tuple[float, float] = DEFAULT_BUDGET
) -> Thresholds:
    """Warning and critical levels at which the expected false-alarm rates are ``budget``."""
    warning, critical = (float(-np.log10(b)) for b in budget)
    return _thresholds("false_alarm_budget", scale, normal, warning, critical)


def f1_thresholds(
    scale: ScoreScale,
    scores: np.ndarray,
    labels: np.ndarray,
    budget: tuple[float, float] = DEFAULT_BUDGET,
) -> Thresholds:
    """Warning at the raw score that maximises F1 on labelled ``scores``; critical at the false
    alarm budget's critical level, or the warning level if that is higher."""
    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        raise ValueError("an F1-optimal threshold needs both normal and anomalous rows")
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], labels[order]
    tp = np.cumsum(hits)
    fp = np.cumsum(~hits)
    last = np.r_[ranked[1:] != ranked[:-1], True]
    f1 = np.where(last, 2 * tp / (tp + fp + hits.sum()), -1)
    best = int(np.argmax(f1))
    beneath = ranked[best + 1] if best + 1 < len(ranked) else ranked[best] - 1
    raw_warning = 0.5 * (ranked[best] + beneath)
    warning = float(scale(np.array([raw_warning]))[0])
    critical = max(warning, float(-np.log10(budget[1])))
    return _thresholds("f1_optimal", scale, scores[~labels], warning, critical)


def _thresholds(
    policy: str, scale: ScoreScale, normal: np.ndarray, warning: float, critical: float
) -> Thresholds:
    calibrated = scale(np.asarray(normal, dtype=np.float64))
    return Thresholds.model_validate(
        {
            "policy": policy,
            "warning": warning,
            "critical": critical,
            "raw_warning": scale.inverse(warning),
            "raw_critical": scale.inverse(critical),
            "warning_far": float((calibrated > warning).mean()),
            "critical_far": float((calibrated > critical).mean()),
            "normal_rows": len(calibrated),
        }
    )
