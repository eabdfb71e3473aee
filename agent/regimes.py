"""Operating regimes: a change of speed or load is not an anomaly.

A machine that learns on site can key its baseline on its operating variables (``Learning``'s
``regimes``: channels of a process machine, such as speed and load). Their levels in
each row (the ``value`` feature, else ``ewma``, else ``roll_mean``) are standardized and
clustered by k-means into at most ``regime_count`` regimes, and each regime that holds
``MIN_CALIBRATION_ROWS`` of the calibration rows gets its own score scale: a calibrated level
means the same share of that regime's normal windows. A regime with fewer keeps the model's
scale.

A row farther from every regime's centre than ``REACH`` times that regime's radius (the
farthest of its own fitting rows) comes from a regime the baseline never saw. Its
calibrated score is NaN, and so is that of each of the rows after it whose rolling history
reaches back into it: the decision stage treats them as the machine not running, and the
pipeline counts them and says so on the status topic as ``unknown_regime``, instead of calling
them a fault.
"""

from typing import Annotated, Self

import numpy as np
from pydantic import Field, FiniteFloat, model_validator

from edgewatch.agent.calibration import MIN_CALIBRATION_ROWS, ScoreScale, fit_scale
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.metrics import Registry
from edgewatch.agent.onsite.detectors import Kmeans
from edgewatch.agent.schema import Frozen

REACH = 1.25
LEVELS = ("value", "ewma", "roll_mean")
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Regimes(Frozen):
    """The regimes of a model's feature rows: which features key them, their standardization,
    the regimes' centres and radii, and each regime's score scale (None: the model's)."""

    features: tuple[Annotated[int, Field(ge=0)], ...] = Field(min_length=1, max_length=64)
    mean: tuple[FiniteFloat, ...]
    scale: tuple[Positive, ...]
    centres: tuple[tuple[FiniteFloat, ...], ...] = Field(min_length=1, max_length=64)
    radius: tuple[Positive, ...]
    scales: tuple[ScoreScale | None, ...]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        width = len(self.features)
        if not len(self.mean) == len(self.scale) == width:
            raise ValueError(f"regimes: mean and scale must give {width} values")
        if any(len(c) != width for c in self.centres):
            raise ValueError(f"regimes: every centre must have {width} values")
        if not len(self.radius) == len(self.scales) == len(self.centres):
            raise ValueError("regimes: one radius and one scale per centre")
        return self

    def assign(self, rows: np.ndarray) -> np.ndarray:
        """Each row's regime, -1 for one the baseline never saw."""
        z = (rows[:, list(self.features)].astype(np.float64) - self.mean) / self.scale
        distances = np.sqrt(((z[:, None, :] - np.array(self.centres)) ** 2).sum(axis=2))
        ratio = distances / np.array(self.radius)
        nearest: np.ndarray = ratio.argmin(axis=1)
        nearest[ratio.min(axis=1, initial=np.inf) > REACH] = -1
        return nearest

    def calibrate(self, rows: np.ndarray, raw: np.ndarray, model: ScoreScale) -> np.ndarray:
        """The calibrated scores of ``rows``, each on its regime's scale; NaN for a regime the
        baseline never saw."""
        regime = self.assign(rows)
        calibrated = np.full(len(raw), np.nan)
        for index, scale in enumerate(self.scales):
            mine = regime == index
            if mine.any():
                calibrated[mine] = (scale or model)(raw[mine])
        return calibrated


def keys(spec: FeatureSpec, channels: tuple[str, ...]) -> tuple[int, ...]:
    """The features that key the regimes of ``channels``: each channel's level.
    ``ValueError`` when a channel is not the spec's, or the spec has no level of it."""
    found = []
    for channel in channels:
        if spec.kind != "process" or channel not in spec.channels:
            raise ValueError(f"regimes: {channel!r} is not a channel of the process features")
        prefix = f"ch{spec.channels.index(channel)}."
        names = [prefix + level for level in LEVELS if prefix + level in spec.feature_names]
        if not names:
            raise ValueError(f"regimes: the features give no level of {channel!r} ({LEVELS})")
        found.append(spec.feature_names.index(names[0]))
    return tuple(found)


def fit_regimes(
    fitting: np.ndarray,
    held_back: np.ndarray,
    raw: np.ndarray,
    features: tuple[int, ...],
    count: int,
) -> tuple[Regimes, list[str]]:
    """Regimes from the fitting rows, each calibrated on its share of the held-back rows and
    their ``raw`` scores; and what the user should know about them."""
    clusters = Kmeans(count)
    clusters.fit(fitting[:, list(features)])
    z = (fitting[:, list(features)].astype(np.float64) - clusters.mean) / clusters.scale
    distances = np.sqrt(((z[:, None, :] - clusters.centres) ** 2).sum(axis=2))
    nearest = distances.argmin(axis=1)
    radius = [
        max(float(distances[nearest == c, c].max(initial=0.0)), 1e-6)
        for c in range(len(clusters.centres))
    ]
    regimes = Regimes(
        features=features,
        mean=tuple(clusters.mean),
        scale=tuple(clusters.scale),
        centres=tuple(tuple(c) for c in clusters.centres),
        radius=tuple(radius),
        scales=(None,) * len(clusters.centres),
    )
    regime = regimes.assign(held_back)
    scales: list[ScoreScale | None] = []
    notes = []
    for index in range(len(clusters.centres)):
        mine = raw[regime == index]
        if len(mine) >= MIN_CALIBRATION_ROWS and np.ptp(mine) > 0:
            scales.append(fit_scale(mine))
        else:
            scales.append(None)
            notes.append(
                f"regime {index} holds {len(mine)} calibration rows, fewer than "
                f"{MIN_CALIBRATION_ROWS}: it keeps the model's score scale"
            )
    return regimes.model_copy(update={"scales": tuple(scales)}), notes


class Unknown:
    """The devices whose windows come from a regime their model never saw: the windows after
    them that still hold it in their history unscored too, the windows counted, and each
    device's entry into one told once."""

    def __init__(self, registry: Registry) -> None:
        self.windows = registry.counter(
            "windows_unknown_regime_total",
            "Windows from an operating regime the model never saw (or holding one in their "
            "history), left unscored",
        )
        self._left: dict[str, int] = {}

    def mask(
        self, device: str, ends: np.ndarray, calibrated: np.ndarray, history: int
    ) -> float | None:
        """Unscore (NaN, in place) the windows of a device's part that follow an unknown one
        within ``history`` windows; the time of the first unknown window when the device has
        just entered a regime its model never saw, else None."""
        unknown = np.isnan(calibrated)
        left = self._left.get(device, 0)
        if not unknown.any() and not left:
            return None
        entered = None
        for i in range(len(calibrated)):
            if unknown[i]:
                if not left and entered is None:
                    entered = float(ends[i])
                left = history
            elif left:
                calibrated[i] = np.nan
                left -= 1
        self.windows.inc(int(np.isnan(calibrated).sum()))
        if left:
            self._left[device] = left
        else:
            self._left.pop(device, None)
        return entered

    def forget(self, device: str) -> None:
        self._left.pop(device, None)
