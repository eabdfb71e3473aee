"""Supervision: no exception in one component stops the agent.

Every thread the agent starts runs under ``Supervisor.start``. An unexpected exception is logged
with its trace and counted (``edgewatch_component_failures_total{component}``), the component is
marked down and restarted after a backoff that doubles from ``min_backoff_s`` to
``max_backoff_s`` (and starts again from the bottom once a run lasted longer than the top). A
component that returns has finished (a replayed file ends) and is not started again.
Callbacks that run on another library's thread (paho's network loop) go through ``guard``: their
exceptions are logged and counted the same way, and never reach the library, whose thread would
die with them.

>>> import threading
>>> supervisor = Supervisor(Registry(), min_backoff_s=0.01)
>>> attempts = []
>>> def flaky(stop):
...     attempts.append(1)
...     if len(attempts) < 3:
...         raise RuntimeError("boom")
...     stop.wait()
>>> stop = threading.Event()
>>> thread = supervisor.start("flaky", flaky, stop)
>>> while supervisor.states()["flaky"] != "running" or len(attempts) < 3:
...     _ = stop.wait(0.01)
>>> supervisor.failures.values
{('flaky',): 2.0}
>>> stop.set(); thread.join()
>>> supervisor.states()
{'flaky': 'stopped'}
"""

import logging
import threading
import time
from collections.abc import Callable
from typing import ParamSpec

from edgewatch.agent.clock import Backoff
from edgewatch.agent.metrics import Registry

log = logging.getLogger(__name__)
P = ParamSpec("P")
Target = Callable[[threading.Event], None]
# How a component starts its thread: ``Supervisor.start`` in the agent, ``thread`` on its own.
Spawn = Callable[[str, Target, threading.Event], threading.Thread]
Guard = Callable[[Callable[..., None]], Callable[..., None]]


def thread(name: str, target: Target, stop: threading.Event) -> threading.Thread:
    """Run ``target(stop)`` on a daemon thread, unsupervised."""
    started = threading.Thread(target=target, args=(stop,), name=name, daemon=True)
    started.start()
    return started


def unguarded(callback: Callable[..., None]) -> Callable[..., None]:
    return callback


class Supervisor:
    def __init__(
        self, registry: Registry, min_backoff_s: float = 0.1, max_backoff_s: float = 5.0
    ) -> None:
        self.min_backoff_s, self.max_backoff_s = min_backoff_s, max_backoff_s
        self.failures = registry.counter(
            "component_failures_total", "Unexpected exceptions, by component", ("component",)
        )
        self._states: dict[str, str] = {}
        self._lock = threading.Lock()

    def start(self, name: str, target: Target, stop: threading.Event) -> threading.Thread:
        """Run ``target(stop)`` on a thread of its own until ``stop`` is set, restarting it
        after each failure."""
        thread = threading.Thread(
            target=self._keep, args=(name, target, stop), name=name, daemon=True
        )
        self._set(name, "running")
        thread.start()
        return thread

    def guard(self, name: str, callback: Callable[P, None]) -> Callable[P, None]:
        """``callback``, with any exception it raises logged and counted instead."""

        def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
            try:
                callback(*args, **kwargs)
            except Exception:
                self._failed(name)

        return guarded

    def states(self) -> dict[str, str]:
        """Each component's state: ``running``, ``down`` (waiting to restart) or ``stopped``
        (finished, or stopped by its event)."""
        with self._lock:
            return dict(self._states)

    def down(self) -> list[str]:
        """The components waiting to restart."""
        return sorted(name for name, state in self.states().items() if state == "down")

    def _keep(self, name: str, target: Target, stop: threading.Event) -> None:
        backoff = Backoff(self.max_backoff_s, self.min_backoff_s)
        while not stop.is_set():
            self._set(name, "running")
            began = time.monotonic()
            try:
                target(stop)
                break
            except Exception:
                self._failed(name)
            self._set(name, "down")
            if time.monotonic() - began > self.max_backoff_s:
                backoff.reset()
            backoff.wait(stop)
        self._set(name, "stopped")

    def _failed(self, name: str) -> None:
        log.exception("%s failed", name)
        self.failures.inc(1, name)

    def _set(self, name: str, state: str) -> None:
        with self._lock:
            self._states[name] = state
