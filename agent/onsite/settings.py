"""How a machine learns its normal on site, as the agent config's ``[machines.learn]`` says."""

import math
from typing import Annotated

from pydantic import Field, model_validator

from edgewatch.agent.calibration import MIN_CALIBRATION_ROWS
from edgewatch.agent.features import ChannelName
from edgewatch.agent.onsite.detectors import Kind
from edgewatch.agent.schema import Frozen

MIN_FIT_ROWS = 30
Share = Annotated[float, Field(gt=0, lt=1)]


class Learning(Frozen):
    """How a machine learns its normal: the detector, and the share of the baseline, its
    latest rows, held back to calibrate on. The agent collects ``min_rows`` rows at least,
    over ``duration_s`` at least, while the machine runs. ``regimes``: the channels whose
    levels key its operating regimes, at most ``regime_count`` of them (``agent.regimes``)."""

    detector: Kind = "gaussian"
    clusters: int = Field(default=3, ge=1, le=64)
    variance: float = Field(default=0.9, gt=0, le=1)
    calibration: float = Field(default=0.3, ge=0.1, le=0.7)
    budget: tuple[Share, Share] = (0.01, 0.001)
    duration_s: float = Field(default=3600.0, ge=0, le=30 * 86_400)
    min_rows: int = Field(default=1000, ge=1, le=1_000_000)
    max_rows: int = Field(default=20_000, ge=1, le=1_000_000)
    regimes: tuple[ChannelName, ...] = Field(default=(), max_length=8)
    regime_count: int = Field(default=3, ge=1, le=16)

    @model_validator(mode="after")
    def _consistent(self) -> "Learning":
        if self.budget[1] > self.budget[0]:
            raise ValueError(
                "budget is (warning, critical): the critical false-alarm rate must not exceed "
                "the warning one"
            )
        if self.max_rows < self.min_rows:
            raise ValueError(f"max_rows ({self.max_rows}) is below min_rows ({self.min_rows})")
        if self.min_rows < self.rows_needed():
            raise ValueError(
                f"min_rows ({self.min_rows}) is too few for a {self.detector} model: it needs "
                f"at least {self.rows_needed()}"
            )
        return self

    def rows_needed(self) -> int:
        """The fewest rows a baseline can have: enough to fit, and ``MIN_CALIBRATION_ROWS``
        after them to calibrate on."""
        fit = MIN_FIT_ROWS * (self.clusters if self.detector == "kmeans" else 1)
        return rows_needed(fit, self.calibration)


class Adapting(Frozen):
    """Unattended adaptation, for a machine with nobody to ask (``agent.onsite.adapt``): its
    model follows the windows judged normal. The windows kept are the latest of as many as its
    first baseline held: each re-fit, after ``refit_every`` of that many new windows, forgets
    the oldest. A window scoring above the warning level less ``margin``, or while an alert is
    open, never enters the fit; an alert open for ``shift_s`` is a level shift, re-learned from
    its own windows and reported as drift ``adapted: true``."""

    refit_every: float = Field(default=0.1, gt=0, le=1)
    margin: float = Field(default=0.5, ge=0, le=3)
    shift_s: float = Field(default=3600.0, gt=0, le=30 * 86_400)


def rows_needed(fit: int, calibration: float) -> int:
    """The fewest rows that leave ``fit`` rows to fit on and ``MIN_CALIBRATION_ROWS`` to
    calibrate on, when the last ``calibration`` share calibrates.

    >>> rows_needed(30, 0.3)
    167
    """
    return max(math.ceil(fit / (1 - calibration)), math.ceil(MIN_CALIBRATION_ROWS / calibration))
