"""``edgewatch bench``: the kernels, scoring and pipeline benchmarks in one run, and what they
mean for a sensor: how many of them this machine carries.

The capacity is measured, not extrapolated: a model is trained for the sensor described, and
its blocks go through the agent's whole in-process pipeline, as in ``bench pipeline``.
"""

from typing import Any

from edgewatch.export.bench import kernels, pipeline, scoring
from edgewatch.export.bench.pipeline import Sensor


def run(sensor: Sensor, rounds: int = 3) -> dict[str, Any]:
    """Every benchmark's object merged into one, with ``capacity`` for ``sensor``: the pipeline
    benchmark's own figure for its sensor, else a measurement of this one."""
    result = {**kernels.run(), **scoring.run(), **pipeline.run(rounds)}
    if sensor == Sensor():
        measured = pipeline.capacity_of(
            sensor, result["pipeline"]["sensors_per_core"], result["alerts_spooled"]
        )
    else:
        measured = pipeline.capacity(sensor, rounds)
    return {**result, "capacity": measured}


def render(result: dict[str, Any]) -> str:
    c = result["capacity"]
    sensor = Sensor(**c["sensor"])
    return "\n\n".join(
        [
            kernels.render(result),
            scoring.render(result),
            pipeline.render(result),
            capacity(c, sensor),
        ]
    )


def capacity(c: dict[str, Any], sensor: Sensor) -> str:
    """The figure a person plans with.

    >>> print(capacity({"sensors_per_core": 700.4, "cores": 4, "sensors": 2801.6}, Sensor()))
    this machine can carry about 2,801 sensors of this kind (4 cores x 700 per core)
      sensor: 3 axes at 25.6 kHz, windows of 1024 with hop 512, isolation_forest
      one agent (threads = 1) uses one core; for more, run one per core or raise threads
    """
    return "\n".join(
        [
            f"this machine can carry about {int(c['sensors']):,} sensors of this kind "
            f"({c['cores']} cores x {c['sensors_per_core']:.0f} per core)",
            f"  sensor: {sensor.describe()}",
            "  one agent (threads = 1) uses one core; for more, run one per core or raise threads",
        ]
    )
