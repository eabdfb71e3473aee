"""How scores become alerts, as a config sets it: the decision settings and machine-state
gates of ``[decision]`` (and of each ``[[machines]]`` entry)."""

from typing import Annotated, Literal, Self

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from edgewatch.agent.schema import Frozen

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Seconds = Annotated[float, Field(gt=0, le=86_400)]


class Settings(Frozen):
    # No number in a config may be NaN or infinite: `warning = nan` would never alert.
    model_config = ConfigDict(allow_inf_nan=False)


class RmsGate(Settings):
    """Idle while every channel's RMS is below ``floor``."""

    type: Literal["rms"]
    floor: float = Field(gt=0)


class ProcessGate(Settings):
    """Idle while process channel ``channel`` is below ``minimum``."""

    type: Literal["process"]
    channel: Name
    minimum: float


Gate = RmsGate | ProcessGate


class Decision(Settings):
    """How scores become alerts. Thresholds are the bundle's unless given here."""

    warmup_windows: int = Field(default=10, ge=0, le=1_000_000)
    warning: float | None = None
    critical: float | None = None
    n: int = Field(default=3, ge=1, le=1000)
    m: int = Field(default=5, ge=1, le=1000)
    hysteresis: float = Field(default=0.5, ge=0, le=100)
    min_duration_s: float = Field(default=0.0, ge=0, le=86_400)
    cooldown_s: float = Field(default=60.0, ge=0, le=86_400)
    release: float = Field(default=0.0, ge=0, lt=1)
    gate: Annotated[Gate, Field(discriminator="type")] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.n > self.m:
            raise ValueError(f"n ({self.n}) of m ({self.m}): n must not exceed m")
        if self.warning is not None and self.critical is not None and self.critical < self.warning:
            raise ValueError("critical must not be below warning")
        return self


class DriftSettings(Settings):
    """The drift watch (``agent.drift``): a CUSUM on the windows above ``level`` on the
    calibrated scale, built to notice their rate rising ``ratio`` times. It takes at most one
    window every ``spacing_s`` of a device's time, and between false signals on normal running
    lie ``run_length_days`` at least (more for a device that sends less often)."""

    enabled: bool = True
    level: float = Field(default=1.0, gt=0, le=3)
    ratio: float = Field(default=3.0, gt=1, le=100)
    run_length_days: float = Field(default=365.0, ge=1, le=36_500)
    spacing_s: float = Field(default=10.0, gt=0, le=3600)

    @property
    def run_length(self) -> float:
        """The run length in windows taken."""
        return self.run_length_days * 86_400 / self.spacing_s

    @model_validator(mode="after")
    def _rate(self) -> Self:
        if self.ratio * 10.0**-self.level >= 1:
            raise ValueError(
                f"ratio {self.ratio:g} at level {self.level:g} asks for more than every window"
            )
        return self


class ShadowSettings(Settings):
    """Candidate models scored beside the model in use before they take over
    (``agent.shadow``): bundles from a hot reload (``reloads``), models re-fitted or relearned
    on site (``refits``). The trial lasts ``duration_s`` of the windows' own time and at least
    ``min_windows`` windows; the candidate is then promoted if it raised at most
    ``max_alert_ratio`` times the alerts of the model in use, flagged no more windows labelled
    normal, and caught every alert labelled anomaly during the trial."""

    reloads: bool = False
    refits: bool = False
    duration_s: float = Field(default=86_400.0, gt=0, le=90 * 86_400)
    min_windows: int = Field(default=1000, ge=1, le=10**9)
    max_alert_ratio: float = Field(default=1.0, ge=0, le=1000)
