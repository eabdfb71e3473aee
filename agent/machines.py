"""Which model scores each device, and the lanes that score them.

A device belongs to the first ``[[machines]]`` entry of the config that claims it, else to the
default model (``[model]``), else to none: its blocks are dropped and counted (``no_model``).
The devices of a machine with a bundle share that machine's lane; a device that learns on site
gets a lane of its own once it has learned, and until then its blocks build its baseline. A
lane is one model with the streams and decisions of its devices, so one machine's bundle can be
refused, reloaded or learned without touching the others.
"""

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgewatch.agent.config import AgentConfig, Machine
from edgewatch.agent.decision import Decisions
from edgewatch.agent.decision_settings import Decision
from edgewatch.agent.model import Model
from edgewatch.agent.streams import StreamMetrics, Streams

DEFAULT = "default"


@dataclass(frozen=True)
class Route:
    """Where a device's blocks go: the key of its lane, and its machine (None: the default)."""

    device: str
    key: str
    machine: Machine | None

    @property
    def learns(self) -> bool:
        return self.machine is not None and self.machine.learn is not None


def machine_key(name: str) -> str:
    """The lane of the machine called ``name``, whose devices share its bundle."""
    return f"machine:{name}"


def device_key(device: str) -> str:
    """The lane of a device that learned its own model."""
    return f"device:{device}"


def device_of(key: str) -> str | None:
    """The device whose own lane ``key`` is, or None for a shared lane.

    >>> device_of(device_key("pump-1")), device_of(machine_key("pumps"))
    ('pump-1', None)
    """
    return key.removeprefix("device:") if key.startswith("device:") else None


@dataclass(frozen=True)
class Bundled:
    """A lane whose model is a shipped bundle: the default's, or a machine's. ``field`` names
    it in the config."""

    key: str
    field: str
    path: Path
    decision: Decision


def bundled(config: AgentConfig) -> list[Bundled]:
    """The lanes of ``config`` that score with a shipped bundle."""
    found = []
    if config.model.bundle is not None:
        found.append(Bundled(DEFAULT, "model.bundle", config.model.bundle, config.decision))
    for i, machine in enumerate(config.machines):
        if machine.bundle is not None:
            key, field = machine_key(machine.name), f"machines[{i}].bundle"
            found.append(Bundled(key, field, machine.bundle, machine.decision))
    return found


class Router:
    """Each device's route, remembered for the ``max_devices`` most recently seen."""

    def __init__(self, machines: Sequence[Machine], default: bool, max_devices: int) -> None:
        self.machines, self.default, self.max_devices = tuple(machines), default, max_devices
        self._routes: OrderedDict[str, Route | None] = OrderedDict()

    def route(self, device: str) -> Route | None:
        """The device's route; None when nothing scores it."""
        if device in self._routes:
            self._routes.move_to_end(device)
            return self._routes[device]
        route = self._routes[device] = self.claim(device)
        return route

    def claim(self, device: str) -> Route | None:
        """The route ``device`` would take, not remembered."""
        machine = next((m for m in self.machines if m.claims(device)), None)
        if machine is not None:
            key = device_key(device) if machine.learn is not None else machine_key(machine.name)
            return Route(device, key, machine)
        return Route(device, DEFAULT, None) if self.default else None

    def evicted(self) -> list[Route]:
        """The routes forgotten to stay within ``max_devices``, least recently seen first."""
        gone = []
        while len(self._routes) > self.max_devices:
            route = self._routes.popitem(last=False)[1]
            if route is not None:
                gone.append(route)
        return gone

    def routes(self) -> list[Route]:
        return [r for r in self._routes.values() if r is not None]


class Lane:
    """One model and the devices it scores: their streaming state and their decisions."""

    def __init__(self, model: Model, metrics: StreamMetrics, max_devices: int) -> None:
        self.streams = Streams(metrics, max_devices)
        self.decisions = Decisions()
        self.use(model)

    def use(self, model: Model) -> None:
        """Score with ``model`` from now on; each device keeps its history and its alerts."""
        self.model = model
        self.streams.use(model.spec, model.history)
        self.decisions.retune(model.policy)

    def forget(self, device: str) -> None:
        self.streams.forget(device)
        self.decisions.forget(device)
