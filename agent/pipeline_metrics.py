"""The pipeline's own metrics: what it scored, refused and raised, how long blocks waited, and
the model and drift state of its lanes (read when ``/metrics`` is asked for)."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgewatch.agent.metrics import Counter, Gauge, Histogram, Registry

if TYPE_CHECKING:
    from edgewatch.agent.pipeline import Pipeline

SCORE_BUCKETS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0)


@dataclass(frozen=True)
class PipelineMetrics:
    drift_events: Counter
    windows_scored: Counter
    rejected: Counter
    alerts_total: Counter
    scores: Histogram
    loop_lag: Gauge

    @classmethod
    def of(cls, registry: Registry, pipeline: "Pipeline") -> "PipelineMetrics":
        """The metrics, registered; the collected ones read ``pipeline``'s state."""
        registry.collect(
            "gauge",
            "devices_drifted",
            "Devices whose scores drifted from their calibration, until a new model",
            (),
            lambda: {(): float(len(pipeline.drift.drifted())) if pipeline.drift else 0.0},
        )
        registry.collect(
            "counter",
            "device_windows_scored_total",
            "Windows (or rows) scored, per device",
            ("device",),
            lambda: {(d,): float(n) for d, n in pipeline.scored_by_device.items()},
        )
        registry.collect(
            "gauge",
            "model_info",
            "The model of each lane (value 1)",
            ("lane", "name", "version", "sha256"),
            lambda: {
                (key, m.name, m.version, lane.model.bundle.model_sha256): 1.0
                for key, lane in list(pipeline.lanes.items())
                if (m := lane.model.bundle.manifest)
            },
        )
        return cls(
            drift_events=registry.counter("drift_events_total", "Drift signals, one per device"),
            windows_scored=registry.counter("windows_scored_total", "Windows (or rows) scored"),
            rejected=registry.counter(
                "pipeline_rejected_total", "Blocks and windows the pipeline refused", ("reason",)
            ),
            alerts_total=registry.counter(
                "alerts_total", "Alert transitions", ("severity", "state")
            ),
            scores=registry.histogram(
                "score", "Calibrated scores of scored windows", SCORE_BUCKETS
            ),
            loop_lag=registry.gauge(
                "loop_lag_seconds", "How long the last batch's oldest block waited in the inbox"
            ),
        )
