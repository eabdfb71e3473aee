"""Metrics in the Prometheus text format, without a dependency.

Each metric is a family of samples keyed by label values. Counters and gauges are plain floats
updated under the GIL; a scrape renders a snapshot. Values that live elsewhere (a decoder's
counts, the spool's depth) are read at scrape time through ``Registry.collect``.

>>> registry = Registry()
>>> rejected = registry.counter("frames_rejected_total", "Frames refused", ("reason",))
>>> rejected.inc(2, "crc")
>>> print(registry.render().splitlines()[2])
edgewatch_frames_rejected_total{reason="crc"} 2
"""

import math
from collections.abc import Callable, Iterable
from threading import Lock
from typing import TypeVar

import numpy as np

PREFIX = "edgewatch_"
Sample = tuple[str, tuple[tuple[str, str], ...], float]


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    text = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return f"{{{text}}}" if text else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()) -> None:
        self.name, self.help, self.labels = PREFIX + name, help, labels
        self.values: dict[tuple[str, ...], float] = {}

    def samples(self) -> Iterable[Sample]:
        for key, value in list(self.values.items()):
            yield self.name, tuple(zip(self.labels, key, strict=True)), value


class Counter(_Metric):
    kind = "counter"

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount


class Gauge(_Metric):
    kind = "gauge"

    def set(self, value: float, *labels: str) -> None:
        self.values[labels] = value


class Histogram(_Metric):
    """Cumulative buckets, a sum and a count, as Prometheus expects."""

    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: tuple[float, ...]) -> None:
        super().__init__(name, help)
        self.bounds = (*sorted(buckets), math.inf)
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0
        self._lock = Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self.counts[next(i for i, b in enumerate(self.bounds) if value <= b)] += 1
            self.sum += value

    def observe_array(self, values: np.ndarray) -> None:
        found = np.bincount(np.searchsorted(self.bounds, values), minlength=len(self.bounds))
        with self._lock:
            for i in np.flatnonzero(found):
                self.counts[i] += int(found[i])
            self.sum += float(values.sum(dtype=np.float64))

    def samples(self) -> Iterable[Sample]:
        with self._lock:
            counts, total = list(self.counts), self.sum
        running = 0
        for bound, count in zip(self.bounds, counts, strict=True):
            running += count
            yield f"{self.name}_bucket", (("le", _number(bound)),), running
        yield f"{self.name}_sum", (), total
        yield f"{self.name}_count", (), running


Reader = Callable[[], dict[tuple[str, ...], float]]


class _Collected(_Metric):
    def __init__(self, kind: str, name: str, help: str, labels: tuple[str, ...], read: Reader):
        super().__init__(name, help, labels)
        self.kind, self._read = kind, read

    def samples(self) -> Iterable[Sample]:
        self.values = self._read()
        return super().samples()


_M = TypeVar("_M", bound=_Metric)


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def _add(self, metric: _M) -> _M:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is registered twice")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labels: tuple[str, ...] = ()) -> Counter:
        return self._add(Counter(name, help, labels))

    def gauge(self, name: str, help: str, labels: tuple[str, ...] = ()) -> Gauge:
        return self._add(Gauge(name, help, labels))

    def histogram(self, name: str, help: str, buckets: tuple[float, ...]) -> Histogram:
        return self._add(Histogram(name, help, buckets))

    def collect(
        self, kind: str, name: str, help: str, labels: tuple[str, ...], read: Reader
    ) -> None:
        """A metric whose values ``read`` gives at scrape time."""
        self._add(_Collected(kind, name, help, labels, read))

    def value(self, name: str, *labels: str) -> float:
        """One sample's current value (0 when it has none yet)."""
        metric = self._metrics[PREFIX + name]
        if isinstance(metric, _Collected):
            metric.values = metric._read()
        return metric.values.get(labels, 0.0)

    def render(self) -> str:
        lines = []
        for metric in self._metrics.values():
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            for name, labels, value in metric.samples():
                lines.append(f"{name}{_labels(labels)} {_number(value)}")
        return "\n".join(lines) + "\n"
