"""The calibrated score scale shared by every model family, and the thresholds chosen on it.

A model's raw score is mapped through knots taken from its scores on normal data. The calibrated
value of a score is ``-log10`` of the share of normal data expected to score above it: 2 means one
normal window in a hundred scores this high, 3 one in a thousand. Between knots the map is linear;
below the first knot it is 0; above the last it continues along the last segment, so a worse
anomaly always reads higher.

>>> scale = ScoreScale(raw=(0.0, 1.0, 2.0), calibrated=(0.0, 1.0, 2.0))
>>> scale(np.array([-1.0, 0.5, 2.0, 3.0])).tolist()
[0.0, 0.5, 2.0, 3.0]

A level is measured where at least ``MIN_ABOVE`` normal rows score above it. Beyond, up to
``TAIL_LEVEL``, the knots come from a generalized Pareto tail fitted to the peaks over a high
threshold (peaks-over-threshold, as in SPOT: Siffer et al., KDD 2017): the excesses over the
score that ``max(10, 2 %)`` of the rows exceed, fitted by probability-weighted moments (Hosking
and Wallis, 1987), with the shape held to [-0.5, 0.5]. ``ScoreScale.tail`` records the fit.
"""

import math
from itertools import pairwise
from typing import Annotated, Literal, Self

import numpy as np
from pydantic import Field, FiniteFloat, model_validator

from edgewatch.agent.schema import Frozen

LEVEL_STEP = 0.25
DEFAULT_BUDGET = (0.01, 0.001)
MIN_ABOVE = 10
TAIL_SHARE = 0.02
TAIL_LEVEL = 4.0
MAX_SHAPE = 0.5
# The fewest normal rows calibration takes: 10 peaks over the 80th percentile for the tail.
MIN_CALIBRATION_ROWS = 50

Rate = Annotated[float, Field(ge=0, le=1)]


class Tail(Frozen):
    """A generalized Pareto tail over ``threshold``, the raw score that ``excesses`` of the
    ``rows`` calibration scores exceeded: ``P(score > threshold + y) = excesses / rows *
    (1 + shape * y / scale) ** (-1 / shape)``. Levels from ``from_level`` up are estimated
    from it, not measured."""

    method: Literal["pot_gpd_pwm"] = "pot_gpd_pwm"
    threshold: FiniteFloat
    rows: int = Field(ge=1)
    excesses: int = Field(ge=1)
    shape: FiniteFloat = Field(ge=-MAX_SHAPE, le=MAX_SHAPE)
    scale: FiniteFloat = Field(gt=0)
    from_level: FiniteFloat

    def quantile(self, level: float) -> float:
        """The raw score that a share ``10**-level`` of normal rows exceeds."""
        ratio = float(self.excesses / (self.rows * 10.0**-level))
        if abs(self.shape) < 1e-9:
            return self.threshold + self.scale * float(np.log(ratio))
        return float(self.threshold + self.scale / self.shape * (ratio**self.shape - 1))


class ScoreScale(Frozen):
    """Raw score -> calibrated score, piecewise linear through ``(raw[k], calibrated[k])``."""

    raw: tuple[FiniteFloat, ...] = Field(min_length=2, max_length=1024)
    calibrated: tuple[FiniteFloat, ...] = Field(min_length=2, max_length=1024)
    tail: Tail | None = None

    @model_validator(mode="after")
    def _increasing(self) -> Self:
        if len(self.raw) != len(self.calibrated):
            raise ValueError(
                f"raw and calibrated need one value per knot, got {len(self.raw)} and "
                f"{len(self.calibrated)}"
            )
        for name in ("raw", "calibrated"):
            if any(b <= a for a, b in pairwise(getattr(self, name))):
                raise ValueError(f"{name} knots must be strictly increasing")
        return self

    @property
    def slope(self) -> float:
        """Calibrated units per raw unit beyond the last knot."""
        return (self.calibrated[-1] - self.calibrated[-2]) / (self.raw[-1] - self.raw[-2])

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        calibrated: np.ndarray = np.interp(raw, self.raw, self.calibrated)
        beyond = raw > self.raw[-1]
        calibrated[beyond] = self.calibrated[-1] + self.slope * (raw[beyond] - self.raw[-1])
        return calibrated

    def inverse(self, calibrated: float) -> float:
        """The raw score that maps to ``calibrated`` (at least ``self.calibrated[0]``)."""
        if calibrated > self.calibrated[-1]:
            return self.raw[-1] + (calibrated - self.calibrated[-1]) / self.slope
        return float(np.interp(calibrated, self.calibrated, self.raw))


class Thresholds(Frozen):
    """Warning and critical levels on the calibrated scale, with how they were chosen.

    ``expected_*_far`` is the false-alarm rate, per window before debouncing, that each level
    promises on new normal data: ``10**-level``. ``*_far`` is the share of the normal
    calibration rows above it, and ``normal_rows`` how many there were.
    """

    policy: Literal["false_alarm_budget", "f1_optimal"]
    warning: FiniteFloat
    critical: FiniteFloat
    raw_warning: FiniteFloat
    raw_critical: FiniteFloat
    warning_far: Rate
    critical_far: Rate
    expected_warning_far: Rate | None = None
    expected_critical_far: Rate | None = None
    normal_rows: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.critical < self.warning or self.raw_critical < self.raw_warning:
            raise ValueError("the critical threshold must not be below the warning threshold")
        return self


class CalibrationError(ValueError):
    """Scores that cannot calibrate a model, and what it would take."""


def fit_tail(scores: np.ndarray) -> Tail | None:
    """The generalized Pareto tail of sorted ``scores``, or None when the peaks are too few or
    all equal.

    >>> tail = fit_tail(np.sort(np.random.default_rng(0).exponential(size=20_000)))
    >>> round(tail.shape, 1), round(tail.quantile(4.0), 1)  # exactly 0 and ln(10**4) = 9.21
    (0.0, 9.4)
    """
    n = len(scores)
    peaks = max(MIN_ABOVE, int(np.ceil(TAIL_SHARE * n)))
    if n < 2 * peaks:
        return None
    threshold = float(scores[n - peaks - 1])
    excess = scores[n - peaks :] - threshold
    if excess[-1] <= 0:
        return None
    a0 = float(excess.mean())
    a1 = float((excess * np.arange(peaks - 1, -1, -1) / (peaks - 1)).mean())
    if a0 <= 2 * a1:
        return None
    k = a0 / (a0 - 2 * a1) - 2
    return Tail(
        threshold=threshold,
        rows=n,
        excesses=peaks,
        shape=float(np.clip(-k, -MAX_SHAPE, MAX_SHAPE)),
        scale=2 * a0 * a1 / (a0 - 2 * a1),
        from_level=float(np.log10(n / MIN_ABOVE)),
    )


def fit_scale(normal: np.ndarray, tail: bool = True) -> ScoreScale:
    """Knots at the quantiles ``1 - 10**-level`` of ``normal`` scores for levels 0, 0.25, ...;
    with a fitted ``tail``, while ``MIN_ABOVE`` rows lie above them and then at the tail's
    quantiles up to ``TAIL_LEVEL``; without, while one row does and then at the maximum, at
    ``log10(n + 1)``.

    >>> [round(level, 4) for level in fit_scale(np.arange(1000.0), tail=False).calibrated[-3:]]
    [2.75, 3.0, 3.0004]
    """
    scores = np.sort(np.asarray(normal, dtype=np.float64))
    n = len(scores)
    if n < 2 or not np.isfinite(scores).all():
        raise CalibrationError(f"calibration needs at least 2 finite normal scores, got {n}")
    fitted = fit_tail(scores) if tail else None
    measured = np.log10(n / (MIN_ABOVE if fitted else 1))
    levels = np.arange(0.0, measured + 1e-9, LEVEL_STEP)
    raw, calibrated = [*np.quantile(scores, 1 - 10.0**-levels)], [*levels]
    if fitted is None:
        raw.append(scores[-1])
        calibrated.append(np.log10(n + 1))
    else:
        for level in np.arange(levels[-1] + LEVEL_STEP, TAIL_LEVEL + 1e-9, LEVEL_STEP):
            raw.append(fitted.quantile(level))
            calibrated.append(level)
    knots_raw, knots_cal = [raw[0]], [calibrated[0]]
    for r, c in zip(raw[1:], calibrated[1:], strict=True):
        if r > knots_raw[-1]:
            knots_raw.append(r)
            knots_cal.append(c)
    if len(knots_raw) < 2:
        raise CalibrationError("calibration needs normal scores that are not all equal")
    return ScoreScale(
        raw=tuple(map(float, knots_raw)), calibrated=tuple(map(float, knots_cal)), tail=fitted
    )


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
        raise CalibrationError("an F1-optimal threshold needs both normal and anomalous rows")
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
            "expected_warning_far": 10.0**-warning,
            "expected_critical_far": 10.0**-critical,
            "normal_rows": len(calibrated),
        }
    )


def thin(thresholds: Thresholds, scale: ScoreScale) -> tuple[str, ...]:
    """A note for each threshold that its calibration rows are too few to measure."""
    rows = thresholds.normal_rows
    measured = math.log10(rows / MIN_ABOVE)
    how = "estimated from the fitted tail" if scale.tail else "extrapolated from the highest score"
    return tuple(
        f"calibration is thin for the {name} level {level:.2f}: {rows} rows measure levels up "
        f"to {measured:.2f}, so it is {how}; {math.ceil(MIN_ABOVE * 10**level)} calibration "
        f"rows would measure it"
        for name, level in (("warning", thresholds.warning), ("critical", thresholds.critical))
        if level > measured + 1e-9
    )
