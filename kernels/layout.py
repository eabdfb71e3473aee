"""What the kernels compute and how their inputs are laid out: the feature names, the plan, the
Hann window, bearing defect frequencies and the rolling state.

Plain NumPy, so that a caller prepares inputs for either compiled form of the kernels (see
``kernels.runtime``) without importing Numba.
"""

import math
from typing import NamedTuple

import numpy as np

TIME_FEATURES = (
    "mean",
    "std",
    "rms",
    "peak",
    "peak_to_peak",
    "crest_factor",
    "skewness",
    "kurtosis",
    "shape_factor",
    "impulse_factor",
    "clearance_factor",
)

# A window whose variance is below this share of its mean square is constant for our purposes:
# its higher moments and its spectrum are rounding noise, so they are reported as 0.
FLAT_VARIANCE_RATIO = 1e-20

SPECTRAL_FEATURES = (
    "spectral_centroid",
    "spectral_spread",
    "spectral_kurtosis",
    "dominant_freq",
    "dominant_amp",
)

DEFECTS = ("bpfo", "bpfi", "bsf", "ftf")
ENVELOPE_FEATURES = tuple(f"env_{d}" for d in DEFECTS) + tuple(f"env_{d}_2x" for d in DEFECTS)

ROLLING_FEATURES = ("value", "roll_mean", "roll_std", "zscore", "diff", "ewma")

N_TIME = len(TIME_FEATURES)
N_SPECTRAL = len(SPECTRAL_FEATURES)
N_ENVELOPE = len(ENVELOPE_FEATURES)
# The plan's head: the output layout, then the envelope's pass band and two counts.
STRIDE, TIME, SPECTRAL, BANDS, ENVELOPE, PASS_LO, PASS_HI, N_BANDS, N_READ = range(9)
HEAD = 9


def make_plan(
    stride: int,
    offsets: dict[str, int],
    band_lo: np.ndarray,
    band_hi: np.ndarray,
    pass_band: tuple[int, int],
    read_bins: np.ndarray,
) -> np.ndarray:
    """The kernels' plan: ``stride`` features per channel, each family's offset in a channel's
    block (``offsets`` names those that are on), band bins ``band_lo[b] <= k < band_hi[b]``, the
    envelope's pass band ``[lo, hi)`` in bins, and the envelope bins to read."""
    head = [stride] + [offsets.get(f, -1) for f in ("time", "spectral", "bands", "envelope")]
    head += [pass_band[0], pass_band[1], len(band_lo), len(read_bins)]
    return np.concatenate([head, band_lo, band_hi, read_bins]).astype(np.int64)


def hann(n: int) -> np.ndarray:
    """The periodic Hann window, as used for spectral analysis (``scipy.signal.get_window``).

    >>> hann(4).round(12).tolist()
    [0.0, 0.5, 1.0, 0.5]
    """
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def bearing_frequencies(
    shaft_hz: float,
    balls: int,
    ball_diameter: float,
    pitch_diameter: float,
    contact_angle_deg: float = 0.0,
) -> tuple[float, float, float, float]:
    """Defect frequencies in Hz, in DEFECTS order: outer race, inner race, ball spin, cage.

    BSF is the ball's spin frequency; a ball defect that strikes both races shows at 2x BSF,
    which the envelope features also read.

    SKF 6205 (the CWRU test bearing) at 1797 rpm:

    >>> [round(f, 2) for f in bearing_frequencies(1797 / 60, 9, 7.94, 39.04)]
    [107.36, 162.19, 70.58, 11.93]
    """
    ratio = ball_diameter / pitch_diameter * math.cos(math.radians(contact_angle_deg))
    bpfo = balls / 2.0 * shaft_hz * (1.0 - ratio)
    bpfi = balls / 2.0 * shaft_hz * (1.0 + ratio)
    bsf = pitch_diameter / (2.0 * ball_diameter) * shaft_hz * (1.0 - ratio * ratio)
    ftf = shaft_hz / 2.0 * (1.0 - ratio)
    return bpfo, bpfi, bsf, ftf


class RollingState(NamedTuple):
    """Everything the rolling kernel carries from one call to the next."""

    history: np.ndarray  # [history, channels], a ring of the last rows
    counters: np.ndarray  # [rows seen, ring position]
    shift: np.ndarray  # per channel: a recent value the moments are taken about
    mean: np.ndarray  # per channel: mean of (value - shift) over the ring
    m2: np.ndarray  # per channel: sum of squared deviations over the ring
    m2_added: np.ndarray  # per channel: magnitudes added into m2 since the last recompute
    ewma: np.ndarray
    previous: np.ndarray

    @classmethod
    def empty(cls, history: int, channels: int) -> "RollingState":
        """A state that has seen no rows."""
        zeros = np.zeros(channels)
        return cls(
            np.zeros((history, channels)),
            np.zeros(2, dtype=np.int64),
            zeros.copy(),
            zeros.copy(),
            zeros.copy(),
            zeros.copy(),
            zeros.copy(),
            zeros.copy(),
        )
