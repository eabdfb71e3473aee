"""Unattended adaptation (``Adapting``): a learned device's model follows the windows judged
normal, as streaming detectors do, for a site with nobody to ask.

The pipeline hands each scored batch of an adapting device to its ``Follower``: the feature
rows, their calibrated scores, the warning level, and when the device's open alert began. The
follower keeps the latest windows, as many as the device's first baseline held (its memory),
starting from that baseline. A window scoring above the warning level less ``margin`` is kept
for calibration but never fitted on; the windows of an open alert are not kept at all, so a
fault never becomes the normal. After ``refit_every`` of a memory's worth of new windows, the
follower asks for a re-fit on what it keeps: the model forgets, at each re-fit, what its memory
no longer holds.

An alert that stays open for ``shift_s`` is a level shift: the machine has settled elsewhere.
The follower asks for a model of the shift's own windows (once it holds enough of them), and
keeps them as its memory from then on; the learner reports it as drift, ``adapted: true``.
"""

from dataclasses import dataclass

import numpy as np

from edgewatch.agent.onsite.settings import Adapting


@dataclass(frozen=True)
class Refit:
    """Rows to re-fit on, in time order, which of them the fit may take, and, for a level
    shift, when it began and the share of its windows above the warning level."""

    rows: np.ndarray
    fit: np.ndarray
    shift_since: float | None = None
    above: float = 0.0


class Ring:
    """The latest ``size`` rows and their fit flags, in bounded room."""

    def __init__(self, size: int, width: int) -> None:
        self.rows = np.empty((size, width), np.float32)
        self.fit = np.zeros(size, bool)
        self.count = self.head = 0

    def add(self, rows: np.ndarray, fit: np.ndarray) -> None:
        size = len(self.rows)
        rows, fit = rows[-size:], fit[-size:]
        at = (self.head + np.arange(len(rows))) % size
        self.rows[at], self.fit[at] = rows, fit
        self.head = (self.head + len(rows)) % size
        self.count = min(size, self.count + len(rows))

    def ordered(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows kept and their flags, oldest first (copies)."""
        if self.count < len(self.rows):
            return self.rows[: self.count].copy(), self.fit[: self.count].copy()
        order = np.r_[self.head : len(self.rows), 0 : self.head]
        return self.rows[order], self.fit[order]


class Follower:
    def __init__(self, baseline: np.ndarray, settings: Adapting, needed: int) -> None:
        """``baseline``: the rows the device first learned from; ``needed``: the fewest rows
        a model can be learned from."""
        self.settings, self.needed = settings, needed
        self.memory = max(len(baseline), needed)
        self.width = baseline.shape[1]
        self.kept = Ring(self.memory, self.width)
        self.kept.add(baseline, np.ones(len(baseline), bool))
        self.every = max(1, round(settings.refit_every * self.memory))
        self.fresh = self.shifted = self.above = 0
        self.shift: Ring | None = None

    def take(
        self,
        ends: np.ndarray,
        rows: np.ndarray,
        scores: np.ndarray,
        warning: float,
        open_since: float | None,
    ) -> Refit | None:
        """One batch of the device's scored windows; a re-fit when one is due."""
        if not len(rows):
            return None
        if open_since is None:
            self.shift = None
            self.kept.add(rows, scores <= warning - self.settings.margin)
            self.fresh += len(rows)
            if self.fresh < self.every:
                return None
            self.fresh = 0
            return Refit(*self.kept.ordered())
        if self.shift is None:
            self.shift, self.shifted, self.above = Ring(self.memory, self.width), 0, 0
        self.shift.add(rows, np.ones(len(rows), bool))
        self.shifted += len(rows)
        self.above += int((scores > warning).sum())
        lasted = float(ends[-1]) - open_since
        if lasted < self.settings.shift_s or self.shift.count < self.needed:
            return None
        shifted, fit = self.shift.ordered()
        above = self.above / self.shifted
        self.kept, self.shift, self.fresh = self.shift, None, 0
        return Refit(shifted, fit, open_since, above)
