"""The loaded model: a verified bundle, its scorer and the decision policy built from its
thresholds, swapped into the pipeline whole.

The sequence stacking of a model that reads a history of rows lives here too: training
(``export.train``) and serving (``agent.streams``) stack rows with the one function.
"""

from dataclasses import dataclass

import numpy as np

from edgewatch.agent.bundle import Bundle, BundleError
from edgewatch.agent.calibration import Thresholds
from edgewatch.agent.decision import ChannelFloor, Gate, Policy, RmsFloor
from edgewatch.agent.decision_settings import Decision, ProcessGate, RmsGate
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.scorer import Scorer


def sequences(rows: np.ndarray, history: int) -> np.ndarray:
    """Each run of ``history`` consecutive rows, ``[n - history + 1, history, features]``; with
    a history of 1, the rows themselves.

    >>> sequences(np.arange(8).reshape(4, 2), 3)[:, :, 0].tolist()
    [[0, 2, 4], [2, 4, 6]]
    """
    if history == 1:
        return rows
    views = np.lib.stride_tricks.sliding_window_view(rows, history, axis=0)
    return np.ascontiguousarray(np.moveaxis(views, -1, 1))


def gate(setting: RmsGate | ProcessGate | None, spec: FeatureSpec) -> Gate | None:
    """The machine-state gate ``setting`` asks for, on ``spec``'s input; ``BundleError`` when
    it reads a channel that the input does not have."""
    if setting is None:
        return None
    if isinstance(setting, RmsGate):
        return RmsFloor(setting.floor)
    if spec.kind == "waveform":
        raise BundleError(
            "decision.gate: a process gate reads a channel of each row, and this model "
            "takes waveform windows: use an rms gate"
        )
    if setting.channel not in spec.channels:
        raise BundleError(
            f"decision.gate.channel: {setting.channel!r} is not one of the model's "
            f"channels ({', '.join(spec.channels)})"
        )
    return ChannelFloor(spec.channels.index(setting.channel), setting.minimum)


def policy(decision: Decision, thresholds: Thresholds, spec: FeatureSpec) -> Policy:
    """The configured policy, with the bundle's thresholds unless the config sets them."""
    return Policy(
        warning=thresholds.warning if decision.warning is None else decision.warning,
        critical=thresholds.critical if decision.critical is None else decision.critical,
        warmup=decision.warmup_windows,
        n=decision.n,
        m=decision.m,
        hysteresis=decision.hysteresis,
        min_duration_s=decision.min_duration_s,
        cooldown_s=decision.cooldown_s,
        release=decision.release,
        gate=gate(decision.gate, spec),
    )


@dataclass(frozen=True)
class Model:
    """A verified bundle, ready to score: built off the pipeline thread, swapped in whole."""

    bundle: Bundle
    scorer: Scorer
    policy: Policy

    @classmethod
    def load(cls, bundle: Bundle, decision: Decision, threads: int = 1) -> "Model":
        """``bundle`` ready to score and decide on; ``BundleError`` when ``decision``'s gate
        reads a channel that the bundle's input does not have."""
        manifest = bundle.manifest
        chosen = policy(decision, manifest.thresholds, manifest.feature_spec)
        return cls(bundle, Scorer(bundle, threads), chosen)

    @property
    def spec(self) -> FeatureSpec:
        return self.bundle.manifest.feature_spec

    @property
    def history(self) -> int:
        return self.bundle.manifest.model.history


def same_input(old: FeatureSpec, new: FeatureSpec) -> str | None:
    """Why a model for ``new`` cannot take over the streams of ``old``, or None if it can."""
    for name in ("kind", "channels", "sample_rate", "window", "hop"):
        if getattr(old, name) != getattr(new, name):
            return f"feature_spec.{name} changes from {getattr(old, name)} to {getattr(new, name)}"
    return None
