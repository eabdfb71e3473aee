"""The calibrated score scale shared by every model family.

A model's raw score is mapped through knots taken from its scores on normal data. The calibrated
value of a score is ``-log10`` of the share of normal data expected to score above it: 2 means one
normal window in a hundred scores this high, 3 one in a thousand. Between knots the map is linear;
below the first knot it is 0; above the last it continues along the last segment, so a worse
anomaly always reads higher.

>>> scale = ScoreScale(raw=(0.0, 1.0, 2.0), calibrated=(0.0, 1.0, 2.0))
>>> scale(np.array([-1.0, 0.5, 2.0, 3.0])).tolist()
[0.0, 0.5, 2.0, 3.0]
"""

from itertools import pairwise
from typing import Self

import numpy as np
from pydantic import Field, FiniteFloat, model_validator

from edgewatch.agent.schema import Frozen


class ScoreScale(Frozen):
    """Raw score -> calibrated score, piecewise linear through ``(raw[k], calibrated[k])``."""

    raw: tuple[FiniteFloat, ...] = Field(min_length=2, max_length=1024)
    calibrated: tuple[FiniteFloat, ...] = Field(min_length=2, max_length=1024)

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
