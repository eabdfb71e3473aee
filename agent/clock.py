"""Time, injectable: the clock the agent waits on, the pacing of recorded signal, and the
backoff between attempts to reconnect.

Code that waits takes a ``Clock``; tests hand it a fake one and move time themselves.

>>> clock = ManualClock()
>>> pacer = Pacer(2.0, clock)
>>> pacer.wait(0.0)
>>> pacer.wait(10.0)
>>> clock.monotonic()
5.0
"""

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class ManualClock:
    """A clock that moves only when told to, or when something sleeps on it."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


class Pacer:
    """Holds each step of a signal back until its time: ``at`` seconds of signal after the
    first step, played at ``speed`` times real time, or with no wait at all for None."""

    def __init__(self, speed: float | None, clock: Clock | None = None) -> None:
        self.speed, self.clock = speed, clock or SystemClock()
        self._begun: float | None = None

    def wait(self, at: float) -> None:
        if self.speed is None:
            return
        if self._begun is None:
            self._begun = self.clock.monotonic() - at / self.speed
        wait = self._begun + at / self.speed - self.clock.monotonic()
        if wait > 0:
            self.clock.sleep(wait)


class Backoff:
    """Waits between attempts: from ``floor_s``, doubled after each, up to ``ceiling_s``;
    ``reset`` once an attempt has held.

    >>> backoff = Backoff(1.0)
    >>> [backoff.next() for _ in range(6)]
    [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    """

    def __init__(self, ceiling_s: float, floor_s: float = 0.1) -> None:
        self.floor_s, self.ceiling_s = floor_s, ceiling_s
        self.delay_s = floor_s

    def next(self) -> float:
        """The wait before the next attempt, and double it for the one after."""
        delay = self.delay_s
        self.delay_s = min(delay * 2, self.ceiling_s)
        return delay

    def wait(self, stop: threading.Event) -> None:
        """Wait out the next delay, or until ``stop`` is set."""
        stop.wait(self.next())

    def reset(self) -> None:
        self.delay_s = self.floor_s
