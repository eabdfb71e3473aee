"""A candidate model on trial: scored beside a lane's model on the same feature rows, its
alerts decided but never sent, until the promotion rule (``ShadowSettings``) promotes or
retires it.

The trial keeps, for the lane:

- the alerts each model raised (the candidate's would-be alerts are logged, not sent);
- how often the two agree on which side of their warning level a window lies;
- the candidate's false-alarm rate on the machine's own recent normal: the share of the windows
  the model in use scores below its warning that the candidate scores above its own;
- the labels operators give during the trial: the windows of alerts labelled normal that each
  model flags, and the alerts labelled anomaly the candidate would catch (one window of the
  alert above its warning).

Only a candidate that reads the same feature rows as the model in use (the same feature spec
and history) can be compared window by window; any other is retired at once.
"""

import logging
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from edgewatch.agent.decision import Decisions
from edgewatch.agent.decision_settings import ShadowSettings
from edgewatch.agent.metrics import Registry
from edgewatch.agent.model import Model
from edgewatch.agent.streams import Part

log = logging.getLogger(__name__)


def comparable(active: Model, candidate: Model) -> str | None:
    """Why ``candidate`` cannot be tried beside ``active``, or None if it can."""
    if candidate.spec != active.spec:
        return "it reads other features than the model in use; load it without the shadow"
    if candidate.history != active.history:
        return (
            f"it reads sequences of {candidate.history} rows, the model in use "
            f"{active.history}; load it without the shadow"
        )
    return None


class Shadow:
    def __init__(self, candidate: Model, settings: ShadowSettings) -> None:
        self.candidate, self.settings = candidate, settings
        self.decisions = Decisions()
        self.decisions.retune(candidate.policy)
        self.windows = self.agree = self.normal = self.flagged_normal = 0
        self.raised: Counter[str] = Counter()
        self.labelled_normal: Counter[str] = Counter()
        self.anomalies = self.caught = 0
        self.first_ts: float | None = None
        self.last_ts = 0.0

    def score(
        self,
        parts: Sequence[Part],
        inputs: np.ndarray,
        active: np.ndarray,
        warning: float,
        raised: int,
    ) -> None:
        """One batch of the lane: its parts and model inputs, the scores of the model in use,
        its warning level, and how many alerts it raised."""
        scores = self.candidate.scorer(inputs).calibrated
        for verdict in self.decisions.decide(parts, scores):
            for step in verdict.steps:
                if step.state == "raised":
                    self.raised["candidate"] += 1
                    log.info(
                        "%s: the candidate in the shadow would raise a %s alert (score %.2f)",
                        verdict.device,
                        step.severity,
                        step.score,
                    )
        self.raised["active"] += raised
        mine = scores > self.candidate.policy.warning
        theirs = active > warning
        self.windows += len(scores)
        self.agree += int((mine == theirs).sum())
        self.normal += int((~theirs).sum())
        self.flagged_normal += int((mine & ~theirs).sum())
        ends = [part.ends for part in parts if len(part.ends)]
        if ends and self.first_ts is None:
            self.first_ts = min(float(e[0]) for e in ends)
        if ends:
            self.last_ts = max(self.last_ts, *(float(e[-1]) for e in ends))

    def label(self, kind: str, rows: np.ndarray, active: Model) -> None:
        """An operator's label during the trial, with the rows of the labelled alert's
        windows."""
        if not len(rows) or kind not in ("normal", "anomaly"):
            return
        above = self.candidate.scorer(rows).calibrated > self.candidate.policy.warning
        if kind == "anomaly":
            self.anomalies += 1
            self.caught += bool(above.any())
            return
        self.labelled_normal["candidate"] += int(above.sum())
        in_use = active.scorer(rows).calibrated > active.policy.warning
        self.labelled_normal["active"] += int(in_use.sum())

    def verdict(self) -> tuple[bool, str] | None:
        """Once the trial is over, whether to promote the candidate and why; None before."""
        elapsed = self.last_ts - self.first_ts if self.first_ts is not None else 0.0
        if elapsed < self.settings.duration_s or self.windows < self.settings.min_windows:
            return None
        mine, theirs = self.raised["candidate"], self.raised["active"]
        if self.caught < self.anomalies:
            missed = self.anomalies - self.caught
            return False, f"it would miss {missed} of the {self.anomalies} alerts labelled anomaly"
        if self.labelled_normal["candidate"] > self.labelled_normal["active"]:
            return False, (
                f"it flags {self.labelled_normal['candidate']} windows labelled normal, the "
                f"model in use {self.labelled_normal['active']}"
            )
        if mine > self.settings.max_alert_ratio * theirs:
            return False, f"it would raise {mine} alerts to the {theirs} of the model in use"
        return True, f"it would raise {mine} alerts to the {theirs} of the model in use"

    def summary(self) -> dict[str, object]:
        """The trial's figures, for the status topic."""
        manifest = self.candidate.bundle.manifest
        return {
            "candidate": f"{manifest.name}:{manifest.version}",
            "windows": self.windows,
            "alerts": {"candidate": self.raised["candidate"], "active": self.raised["active"]},
            "agreement": round(self.agreement, 4),
            "far_on_recent_normal": round(self.far, 4),
            "labelled_normal_flagged": dict(self.labelled_normal),
            "labelled_anomaly_caught": [self.caught, self.anomalies],
        }

    @property
    def agreement(self) -> float:
        return self.agree / self.windows if self.windows else 1.0

    @property
    def far(self) -> float:
        return self.flagged_normal / self.normal if self.normal else 0.0


class Trials:
    """The lanes' candidates on trial, their decisions and metrics; events go to ``report``."""

    def __init__(self, report: Callable[[dict[str, object]], None]) -> None:
        self.settings = ShadowSettings()
        self.report = report
        self.running: dict[str, Shadow] = {}
        self.decided: Counter[str] = Counter()
        # Told each trial's end: the lane, the candidate, whether it was promoted.
        self.settled: Callable[[str, Model, bool], None] = lambda key, model, promoted: None

    def start(self, key: str, active: Model, candidate: Model) -> None:
        """Try ``candidate`` beside ``active`` in lane ``key`` (ending any trial there)."""
        self.drop(key, "a newer candidate came")
        why = comparable(active, candidate)
        manifest = candidate.bundle.manifest
        if why is not None:
            self._end(key, Shadow(candidate, self.settings), False, why)
            return
        self.running[key] = Shadow(candidate, self.settings)
        log.info("%s: %s %s goes into the shadow", key, manifest.name, manifest.version)
        self.report(
            {
                "event": "shadow_started",
                "lane": key,
                "candidate": f"{manifest.name}:{manifest.version}",
                "duration_s": self.settings.duration_s,
                "min_windows": self.settings.min_windows,
            }
        )

    def score(
        self,
        key: str,
        parts: Sequence[Part],
        inputs: np.ndarray,
        active: Model,
        scores: np.ndarray,
        raised: int,
    ) -> Model | None:
        """A batch of lane ``key`` for its candidate, if it has one; the candidate when the
        trial promotes it."""
        trial = self.running.get(key)
        if trial is None:
            return None
        trial.score(parts, inputs, scores, active.policy.warning, raised)
        outcome = trial.verdict()
        return None if outcome is None else self._end(key, trial, *outcome)

    def label(self, key: str, kind: str, rows: np.ndarray, active: Model) -> None:
        trial = self.running.get(key)
        if trial is not None:
            trial.label(kind, rows, active)

    def decide(self, key: str, promote: bool) -> Model | None:
        """An operator's decision on lane ``key``'s candidate; the candidate if promoted."""
        trial = self.running.get(key)
        if trial is None:
            self.report({"event": "shadow_refused", "lane": key, "reason": "no candidate there"})
            return None
        return self._end(key, trial, promote, "by command")

    def drop(self, key: str, why: str) -> None:
        """End lane ``key``'s trial, if any, without promoting."""
        trial = self.running.get(key)
        if trial is not None:
            self._end(key, trial, False, why)

    def _end(self, key: str, trial: Shadow, promote: bool, why: str) -> Model | None:
        self.running.pop(key, None)
        result = "promoted" if promote else "retired"
        self.decided[result] += 1
        log.warning("%s: the candidate is %s: %s", key, result, why)
        self.report({"event": f"shadow_{result}", "lane": key, "reason": why, **trial.summary()})
        self.settled(key, trial.candidate, promote)
        return trial.candidate if promote else None

    def export_metrics(self, registry: Registry) -> None:
        def each(read: Callable[[Shadow], float]) -> Callable[[], dict[tuple[str, ...], float]]:
            return lambda: {(k,): float(read(t)) for k, t in list(self.running.items())}

        registry.collect(
            "gauge",
            "shadow_windows",
            "Windows the candidate scored",
            ("lane",),
            each(lambda t: t.windows),
        )
        registry.collect(
            "gauge",
            "shadow_agreement",
            "Share of windows the candidate and the model in use put on the same side of warning",
            ("lane",),
            each(lambda t: t.agreement),
        )
        registry.collect(
            "gauge",
            "shadow_far",
            "The candidate's warning rate on windows the model in use calls normal",
            ("lane",),
            each(lambda t: t.far),
        )
        registry.collect(
            "gauge",
            "shadow_alerts",
            "Alerts raised during the trial, by model (the candidate's are not sent)",
            ("lane", "model"),
            lambda: {
                (k, m): float(t.raised[m])
                for k, t in list(self.running.items())
                for m in ("candidate", "active")
            },
        )
        registry.collect(
            "counter",
            "shadow_decisions_total",
            "Candidates promoted or retired",
            ("result",),
            lambda: {(r,): float(self.decided[r]) for r in ("promoted", "retired")},
        )
