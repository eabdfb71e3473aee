"""The bearing defect an alert looks like, named from its envelope spectrum.

A diagnosis is made only when an envelope feature is among the features that drive the alert
(``alerts.TOP_FEATURES`` by deviation). Each defect's lines on each channel are then set
against the baseline, the training rows' mean and standard deviation of the same feature
(the manifest's ``feature_stats``): the rise in dB, ``20 log10(value / mean)``, and the z.

The rule:

- a defect is a candidate when its strike line stands ``RISE_DB`` (10 dB) or more above its
  baseline and ``Z`` (3) or more standard deviations out. The strike line is the defect
  frequency itself for the outer race (BPFO), the inner race (BPFI) and the cage (FTF), and
  twice the ball spin frequency (2xBSF) for a ball, which strikes both races; with a
  speed channel, at the window's own speed;
- a candidate's strike line must stand ``RESOLVED_BINS`` (3) spectrum bins or more from every
  line read for another defect: each reading takes the largest amplitude within a bin of its
  line, so closer lines can read each other's peaks (at 25.6 kHz, a window of 4096 resolves
  the usual bearings; one of 1024, whose bins are 25 Hz wide, does not);
- the candidate whose strike line rises most is named;
- its harmonic (the line at twice the strike frequency, for the races and the cage) is said to
  be present when it stands ``HARMONIC_DB`` (6 dB) or more above its own baseline: a second
  line of the same defect, which makes the diagnosis firmer;
- with no candidate, the diagnosis is empty.

>>> Line("outer_race", "BPFO", 107.36, "x", 18.2, True).text()
'outer_race (BPFO 107.4 Hz on x, +18 dB over baseline, 2x present)'
"""

import math
from dataclasses import dataclass

import numpy as np

from edgewatch.agent.bundle import Manifest

RISE_DB = 10.0
Z = 3.0
HARMONIC_DB = 6.0
RESOLVED_BINS = 3.0
# Defect: (its name, the label of its strike line, the strike feature, the harmonic feature,
# the strike frequency as a multiple of the defect frequency).
DEFECTS = (
    ("outer_race", "BPFO", "env_bpfo", "env_bpfo_2x", 0, 1.0),
    ("inner_race", "BPFI", "env_bpfi", "env_bpfi_2x", 1, 1.0),
    ("ball", "2xBSF", "env_bsf_2x", None, 2, 2.0),
    ("cage", "FTF", "env_ftf", "env_ftf_2x", 3, 1.0),
)


@dataclass(frozen=True)
class Line:
    defect: str
    label: str
    hz: float
    channel: str
    rise_db: float
    harmonic: bool | None

    def text(self) -> str:
        """The defect, its line and how far it rose; then whether its 2x line is present
        (left out for a ball, whose 2x is not read)."""
        said = f"{self.defect} ({self.label} {self.hz:.1f} Hz on {self.channel}, "
        said += f"+{self.rise_db:.0f} dB over baseline"
        if self.harmonic is not None:
            said += ", 2x present" if self.harmonic else ", no 2x"
        return said + ")"


def diagnose(manifest: Manifest, row: np.ndarray, drivers: tuple[str, ...]) -> str:
    """The diagnosis of an alert whose feature row is ``row`` and whose drivers (feature names)
    are ``drivers``; empty when envelope features do not drive it or no defect matches."""
    spec, stats = manifest.feature_spec, manifest.feature_stats
    envelope = spec.families is not None and "envelope" in spec.families
    if stats is None or not envelope or not any(".env_" in name for name in drivers):
        return ""
    index = {name: i for i, name in enumerate(manifest.feature_names)}
    # With a speed channel, the row's last feature is the window's own shaft_hz.
    speed = spec.shaft_hz if spec.speed is None else float(row[-1])
    assert speed is not None
    frequencies = spec.defects_at(speed)
    assert spec.sample_rate is not None and spec.window is not None
    bin_hz = spec.sample_rate / spec.window
    read = [(which, f * k) for which, f in enumerate(frequencies) for k in (1, 2)]
    lines = []
    for c in spec.vibration:
        channel = spec.channels[c]
        for defect, label, strike, harmonic, which, multiple in DEFECTS:
            hz = frequencies[which] * multiple
            others = [abs(hz - f) for owner, f in read if owner != which]
            if min(others) < RESOLVED_BINS * bin_hz:
                continue
            rise, z = _rise(index.get(f"ch{c}.{strike}"), row, stats.mean, stats.std)
            if rise < RISE_DB or z < Z:
                continue
            present = None
            if harmonic is not None:
                h_rise, _ = _rise(index.get(f"ch{c}.{harmonic}"), row, stats.mean, stats.std)
                present = h_rise >= HARMONIC_DB
            lines.append(Line(defect, label, hz, channel, rise, present))
    if not lines:
        return ""
    return max(lines, key=lambda line: line.rise_db).text()


def _rise(
    i: int | None, row: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[float, float]:
    """A feature's rise in dB over its baseline mean, and its z (none: no rise)."""
    if i is None or mean[i] <= 0 or row[i] <= 0:
        return -math.inf, -math.inf
    value = float(row[i])
    z = (value - mean[i]) / std[i] if std[i] > 0 else math.inf
    return 20 * math.log10(value / mean[i]), z
