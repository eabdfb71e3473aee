"""The feature spec: what the input is and which features to compute, and the ordered feature
names it derives. ``agent.featurizer`` computes them.

>>> spec = FeatureSpec(kind="waveform", sample_rate=12000, window=4096, hop=2048, channels=["de"])
>>> spec.feature_names[:3], len(spec.feature_names)
(('ch0.mean', 'ch0.std', 'ch0.rms'), 20)
>>> spec.band_edges
(0.0, 1500.0, 3000.0, 4500.0, 6000.0)
"""

import math
from fractions import Fraction
from functools import cached_property
from itertools import pairwise
from typing import Annotated, Any, Literal, Self

import numpy as np
from pydantic import Field, StringConstraints, model_validator

from edgewatch.agent.schema import Frozen
from edgewatch.kernels.layout import (
    ENVELOPE_FEATURES,
    ROLLING_FEATURES,
    SPECTRAL_FEATURES,
    TIME_FEATURES,
    bearing_frequencies,
)

Kind = Literal["waveform", "process", "record"]
Family = Literal["time", "spectral", "bands", "envelope"]
Rolling = Literal["value", "roll_mean", "roll_std", "zscore", "diff", "ewma"]
ChannelName = Annotated[str, StringConstraints(min_length=1, max_length=64)]

DEFAULT_BANDS = 4
DEFAULT_HISTORY = 30
DEFAULT_EWMA_ALPHA = 0.1
_WAVEFORM_ONLY = (
    "sample_rate",
    "window",
    "hop",
    "families",
    "band_edges",
    "bearing",
    "shaft_hz",
    "speed",
    "envelope_band",
)


class FeatureError(ValueError):
    """Data that does not fit its feature spec."""


class Bearing(Frozen):
    """Rolling-element bearing geometry; diameters in any one unit."""

    balls: int = Field(ge=3, le=200)
    ball_diameter: float = Field(gt=0)
    pitch_diameter: float = Field(gt=0)
    contact_angle_deg: float = Field(default=0.0, ge=0, lt=90)

    @model_validator(mode="after")
    def _ball_fits(self) -> Self:
        if self.ball_diameter >= self.pitch_diameter:
            raise ValueError(
                f"ball_diameter ({self.ball_diameter:g}) must be smaller than pitch_diameter "
                f"({self.pitch_diameter:g})"
            )
        return self


class Speed(Frozen):
    """Where each window's shaft speed comes from: one of the waveform's channels, carrying
    either a ``tachometer``'s pulses, ``pulses_per_rev`` a turn, or the speed itself
    (``value``, the window's median, times ``scale`` to make it Hz: 1/60 for rpm). A process
    tag gives a machine that channel (``[machines.speed_tag]``). ``range_hz``: the speeds the
    machine runs at; a window whose speed is unknown, or outside them, is not scored."""

    channel: ChannelName
    kind: Literal["tachometer", "value"] = "tachometer"
    pulses_per_rev: int = Field(default=1, ge=1, le=1024)
    scale: float = Field(default=1.0, gt=0, le=1e6)
    range_hz: tuple[float, float]

    @model_validator(mode="after")
    def _range(self) -> Self:
        lo, hi = self.range_hz
        if not 0 < lo < hi <= 2000:
            raise ValueError(f"range_hz must satisfy 0 < lo < hi <= 2000, got {self.range_hz}")
        return self


def _fmt(hz: float) -> str:
    return f"{hz:g}"


class FeatureSpec(Frozen):
    """What the input is and which features to compute from it.

    Waveform inputs (vibration) need ``sample_rate`` and a power-of-two ``window``; ``hop``
    defaults to half a window, ``families`` to time, spectral and bands (plus envelope when a
    ``bearing`` is given, which also needs the shaft's speed), and ``band_edges`` to four equal
    bands up to Nyquist. The speed is ``shaft_hz``, fixed, or each window's own, from the
    ``speed`` channel: that channel then gives one feature, ``shaft_hz``, and the envelope is
    read at each window's own defect frequencies. Process inputs (slow rows) take
    rolling statistics over ``history`` rows. Record inputs are already feature vectors.
    """

    kind: Kind
    channels: tuple[ChannelName, ...] = Field(min_length=1, max_length=256)
    sample_rate: float | None = Field(default=None, gt=0, le=10_000_000)
    window: int | None = Field(default=None, ge=16, le=1 << 20)
    hop: int | None = Field(default=None, ge=1)
    families: tuple[Family, ...] | None = None
    band_edges: tuple[float, ...] | None = None
    bearing: Bearing | None = None
    shaft_hz: float | None = Field(default=None, gt=0, le=2000)
    speed: Speed | None = None
    envelope_band: tuple[float, float] | None = None
    history: int | None = Field(default=None, ge=2, le=100_000)
    ewma_alpha: float | None = Field(default=None, gt=0, le=1)
    rolling: tuple[Rolling, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """Make every default explicit, so a stored spec means the same in any version."""
        if not isinstance(data, dict) or data.get("kind") not in ("waveform", "process"):
            return data
        data = dict(data)
        if data["kind"] == "process":
            data.setdefault("history", DEFAULT_HISTORY)
            data.setdefault("ewma_alpha", DEFAULT_EWMA_ALPHA)
            if data.get("rolling") is None:
                data["rolling"] = ROLLING_FEATURES
            return data
        window = data.get("window")
        if data.get("hop") is None and isinstance(window, int):
            data["hop"] = max(window // 2, 1)
        if data.get("families") is None:
            base = ["time", "spectral", "bands"]
            data["families"] = [*base, "envelope"] if data.get("bearing") is not None else base
        rate = data.get("sample_rate")
        families = data["families"]
        if (
            data.get("band_edges") is None
            and isinstance(families, list | tuple)
            and "bands" in families
            and isinstance(rate, int | float)
            and not isinstance(rate, bool)
        ):
            nyquist = rate / 2
            data["band_edges"] = [nyquist * i / DEFAULT_BANDS for i in range(DEFAULT_BANDS + 1)]
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must have distinct names")
        if self.rolling is not None and self.kind != "process":
            raise ValueError(f"rolling: only for process inputs, not {self.kind}")
        if self.kind == "waveform":
            self._check_waveform()
            return self
        given = [name for name in _WAVEFORM_ONLY if getattr(self, name) is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: only for waveform inputs, not {self.kind}")
        if self.kind == "record" and (self.history is not None or self.ewma_alpha is not None):
            raise ValueError("history, ewma_alpha: only for process inputs, not record")
        if self.kind == "process":
            assert self.rolling is not None
            if not self.rolling or len(set(self.rolling)) != len(self.rolling):
                raise ValueError("rolling must name each statistic once, and at least one")
            if self.rolling != tuple(r for r in ROLLING_FEATURES if r in self.rolling):
                raise ValueError(f"rolling must keep the order of {ROLLING_FEATURES}")
        return self

    def _check_waveform(self) -> None:
        if self.history is not None or self.ewma_alpha is not None:
            raise ValueError("history, ewma_alpha: only for process inputs, not waveform")
        if self.sample_rate is None or self.window is None:
            raise ValueError("waveform inputs need sample_rate and window")
        if self.window & (self.window - 1):
            raise ValueError(f"window must be a power of two (the FFT length), got {self.window}")
        assert self.hop is not None and self.families is not None
        if self.hop > self.window:
            raise ValueError(f"hop ({self.hop}) must not exceed window ({self.window})")
        if len(set(self.families)) != len(self.families) or not self.families:
            raise ValueError("families must name each family once, and at least one")
        nyquist = self.sample_rate / 2
        bin_hz = self.sample_rate / self.window
        if "bands" in self.families:
            edges = self.band_edges
            if edges is None or len(edges) < 2:
                raise ValueError("band_edges needs at least two edges for the bands family")
            if any(b <= a for a, b in pairwise(edges)) or edges[0] < 0:
                raise ValueError(f"band_edges must be >= 0 and strictly increasing, got {edges}")
            if edges[-1] > nyquist:
                raise ValueError(
                    f"band edge {_fmt(edges[-1])} Hz is above Nyquist ({_fmt(nyquist)} Hz)"
                )
            for lo, hi in zip(*band_bins(edges, self.sample_rate, self.window), strict=True):
                if hi <= lo:
                    raise ValueError(
                        f"a band in {edges} holds no FFT bin (bins are {bin_hz:g} Hz wide)"
                    )
        elif self.band_edges is not None:
            raise ValueError("band_edges is set but the bands family is not selected")
        if self.speed is not None:
            if self.speed.channel not in self.channels or len(self.channels) < 2:
                raise ValueError("the speed channel must be one of the channels, beside another")
            if self.shaft_hz is not None:
                raise ValueError("give the speed as shaft_hz or a speed channel, not both")
        if "envelope" in self.families:
            if self.bearing is None or (self.shaft_hz is None and self.speed is None):
                raise ValueError("the envelope family needs bearing and shaft_hz (or speed)")
            fastest = self.speed.range_hz[1] if self.speed else self.shaft_hz
            assert fastest is not None
            highest = 2 * max(self.defects_at(fastest))
            if highest >= nyquist:
                raise ValueError(
                    f"2x the highest defect frequency ({_fmt(highest)} Hz) is not below "
                    f"Nyquist ({_fmt(nyquist)} Hz)"
                )
        elif self.bearing is not None or self.envelope_band is not None:
            raise ValueError("bearing or envelope_band is set but the envelope family is not")
        if self.envelope_band is not None:
            lo, hi = self.envelope_band
            if not 0 <= lo < hi <= nyquist:
                raise ValueError(
                    f"envelope_band must satisfy 0 <= lo < hi <= Nyquist ({_fmt(nyquist)} Hz), "
                    f"got {self.envelope_band}"
                )

    @property
    def defect_frequencies(self) -> tuple[float, float, float, float]:
        """BPFO, BPFI, BSF and FTF in Hz for the bearing at ``shaft_hz``."""
        if self.shaft_hz is None:
            raise ValueError("defect frequencies need shaft_hz (with a speed channel: defects_at)")
        return self.defects_at(self.shaft_hz)

    def defects_at(self, shaft_hz: float) -> tuple[float, float, float, float]:
        """BPFO, BPFI, BSF and FTF in Hz for the bearing at ``shaft_hz``."""
        if self.bearing is None:
            raise ValueError("defect frequencies need a bearing")
        b = self.bearing
        return bearing_frequencies(
            shaft_hz, b.balls, b.ball_diameter, b.pitch_diameter, b.contact_angle_deg
        )

    @cached_property
    def vibration(self) -> tuple[int, ...]:
        """The channels featurized as vibration: all but the speed channel."""
        speed = self.speed.channel if self.speed is not None else None
        return tuple(i for i, name in enumerate(self.channels) if name != speed)

    @cached_property
    def family_feature_names(self) -> dict[str, tuple[str, ...]]:
        """A waveform channel's features by family, in output order; other kinds have one
        family named after the kind."""
        if self.kind == "process":
            assert self.rolling is not None
            return {"process": self.rolling}
        if self.kind == "record":
            return {"record": ("value",)}
        assert self.families is not None
        edges = self.band_edges or ()
        table = {
            "time": TIME_FEATURES,
            "spectral": SPECTRAL_FEATURES,
            "bands": tuple(f"band_{_fmt(a)}_{_fmt(b)}" for a, b in pairwise(edges)),
            "envelope": ENVELOPE_FEATURES,
        }
        return {family: names for family, names in table.items() if family in self.families}

    @cached_property
    def channel_feature_names(self) -> tuple[str, ...]:
        """The features of one channel, in output order."""
        return tuple(name for names in self.family_feature_names.values() for name in names)

    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        """Every feature, channel by channel: ``ch0.rms``, ``ch0.band_0_1500``, ..., and last
        the speed channel's ``shaft_hz``."""
        names = tuple(
            f"ch{c}.{name}"
            for c in (self.vibration if self.kind == "waveform" else range(len(self.channels)))
            for name in self.channel_feature_names
        )
        if self.speed is None:
            return names
        return (*names, f"ch{self.channels.index(self.speed.channel)}.shaft_hz")


def band_bins(
    edges: tuple[float, ...], sample_rate: float, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per band, the rfft bins ``lo <= k < hi`` whose frequency lies in ``[edge, next edge)``;
    a band that ends at Nyquist keeps the Nyquist bin. Exact in rational arithmetic, so a bin on
    an edge always falls on the same side.

    >>> [b.tolist() for b in band_bins((0.0, 1000.0, 2000.0), 4000.0, 8)]
    [[0, 2], [2, 5]]
    """
    scale = Fraction(window) / Fraction(sample_rate)
    last = window // 2 + 1
    starts = [math.ceil(Fraction(e) * scale) for e in edges]
    lo = np.array(starts[:-1], dtype=np.int64)
    hi = np.array(starts[1:], dtype=np.int64)
    if Fraction(edges[-1]) * 2 >= Fraction(sample_rate):
        hi[-1] = last
    return lo, np.minimum(hi, last)
