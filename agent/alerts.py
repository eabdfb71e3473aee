"""Alert records: what operators receive, as in DESIGN.md.

One ``alert_id`` follows an alert from ``raised`` (through ``escalated``) to ``cleared``. Each
record carries a per-device sequence number, the model that scored it, and the features that
drove it: the largest per-feature reconstruction errors when the model gives them, else the
largest deviations from the training rows in standard deviations.
"""

from datetime import UTC, datetime
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from edgewatch.agent.bundle import Bundle, Manifest
from edgewatch.agent.decision import Severity, State, Transition
from edgewatch.agent.diagnosis import diagnose
from edgewatch.agent.schema import Frozen

TOP_FEATURES = 5
Measure = Literal["z", "reconstruction_error"]


class Driver(Frozen):
    """A feature behind the alert: its value and how far it is from normal."""

    name: str
    value: float
    deviation: float
    measure: Measure


class ModelRef(Frozen):
    name: str
    version: str
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Alert(Frozen):
    alert_id: Annotated[str, Field(min_length=1, max_length=64)]
    state: State
    severity: Severity
    site: str
    device: str
    sequence: int = Field(ge=1)
    ts: datetime
    started_at: datetime
    score: float
    threshold: float
    reason: str = ""
    model: ModelRef
    features: tuple[Driver, ...] = ()
    # The bearing defect the envelope spectrum points to (``agent.diagnosis``), or empty.
    diagnosis: str = ""
    historical: bool = False


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class AlertMaker:
    """Turns a device's transitions into alert records, numbering each device's records."""

    def __init__(self, site: str, sequences: dict[str, int] | None = None) -> None:
        self.site = site
        self.sequences = dict(sequences or {})

    def make(
        self,
        device: str,
        step: Transition,
        bundle: Bundle,
        features: np.ndarray | None = None,
        errors: np.ndarray | None = None,
    ) -> Alert:
        """The record of ``step`` of the model in ``bundle``; ``features`` (and ``errors``) are
        the row that caused it."""
        sequence = self.sequences.get(device, 0) + 1
        self.sequences[device] = sequence
        manifest = bundle.manifest
        drivers = _drivers(manifest, features, errors) if step.state != "cleared" else ()
        names = tuple(driver.name for driver in drivers)
        return Alert(
            alert_id=step.alert_id,
            state=step.state,
            severity=step.severity,
            site=self.site,
            device=device,
            sequence=sequence,
            ts=_time(step.ts),
            started_at=_time(step.started_at),
            score=step.score,
            threshold=step.threshold,
            reason=step.reason,
            model=ModelRef(
                name=manifest.name, version=manifest.version, sha256=bundle.model_sha256
            ),
            features=drivers,
            diagnosis=diagnose(manifest, features, names) if features is not None else "",
        )

    def closed_by_restart(self, raised: Alert, now: float) -> Alert:
        """The ``cleared`` record of an alert left open when the agent last stopped: a restart
        starts each device's decisions afresh, so what was open is closed, with the score it
        was raised with."""
        sequence = self.sequences.get(raised.device, 0) + 1
        self.sequences[raised.device] = sequence
        return raised.model_copy(
            update={
                "state": "cleared",
                "sequence": sequence,
                "ts": _time(now),
                "reason": "restart",
                "features": (),
                "diagnosis": "",
                "historical": False,
            }
        )


def _drivers(
    manifest: Manifest, features: np.ndarray | None, errors: np.ndarray | None
) -> tuple[Driver, ...]:
    if features is None:
        return ()
    measure: Measure
    stats = manifest.feature_stats
    if errors is not None:
        weight, measure = errors.astype(np.float64), "reconstruction_error"
    elif stats is not None:
        weight, measure = (features - np.array(stats.mean)) / np.array(stats.std), "z"
    else:
        return ()
    top = np.argsort(-np.abs(weight), kind="stable")[:TOP_FEATURES]
    return tuple(
        Driver(
            name=manifest.feature_names[i],
            value=float(features[i]),
            deviation=round(float(weight[i]), 4),
            measure=measure,
        )
        for i in top
    )
