"""The windows of each open alert, kept for the operator's label: from the window that raised
it to the one that cleared it. Past ``LIMIT`` windows the keeper drops every other one kept,
and from then on every other new one is taken (and so on, doubling), so the kept windows span
the whole alert, its onset and its end alike, in bounded room. A ``normal`` label turns them
into a part of the machine's normal (``agent.onsite``).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edgewatch.agent.alerts import Alert

LIMIT = 256


class Keeper(Protocol):
    def record(self, alert: Alert, names: tuple[str, ...], rows: np.ndarray) -> None:
        """Keep rows of ``alert``'s windows (the first call's first row raised it)."""

    def thin(self, alert_id: str) -> None:
        """Drop every other window kept for ``alert_id``, the first kept."""


@dataclass
class _Open:
    alert: Alert
    seen: int = 0
    kept: int = 0
    stride: int = 1


class AlertWindows:
    def __init__(self, keeper: Keeper) -> None:
        self.keeper = keeper
        self._open: dict[str, _Open] = {}

    def take(
        self,
        device: str,
        steps: Sequence[Alert],
        at: Sequence[int],
        rows: np.ndarray,
        names: tuple[str, ...],
    ) -> None:
        """One device's windows of a batch (``rows``, in order) and its alert transitions
        there (``steps``, each at its window's index in ``at``)."""
        state, start = self._open.get(device), 0
        for alert, index in zip(steps, at, strict=True):
            if alert.state == "raised":
                if state is not None:
                    self._keep(state, rows[start:index], names)
                state, start = _Open(alert), index
            elif alert.state == "cleared" and state is not None:
                self._keep(state, rows[start:index], names)
                state = None
        if state is not None:
            self._keep(state, rows[start:], names)
            self._open[device] = state
        else:
            self._open.pop(device, None)

    def open(self, device: str) -> bool:
        return device in self._open

    def forget(self, device: str) -> None:
        self._open.pop(device, None)

    def _keep(self, state: _Open, rows: np.ndarray, names: tuple[str, ...]) -> None:
        while len(rows):
            first = -state.seen % state.stride
            room = LIMIT - state.kept
            taken = rows[first :: state.stride][:room]
            used = min(len(rows), first + len(taken) * state.stride)
            state.seen += used
            rows = rows[used:]
            if len(taken):
                state.kept += len(taken)
                self.keeper.record(state.alert, names, taken)
            if state.kept >= LIMIT:
                self.keeper.thin(state.alert.alert_id)
                state.kept, state.stride = (state.kept + 1) // 2, state.stride * 2
