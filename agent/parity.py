"""The parity gate: an ONNX model must score as the native model it was made from.

Training (``export.parity``) and on-site learning (``agent.onsite``) both pass it before a
bundle is written.
"""

import numpy as np

from edgewatch.agent.bundle import Parity

DEFAULT_TOLERANCE = 1e-4


class ParityError(ValueError):
    """The ONNX model's scores are too far from the native model's."""


def compare(
    native: np.ndarray, exported: np.ndarray, tolerance: float = DEFAULT_TOLERANCE
) -> Parity:
    """How far ``exported`` scores are from ``native`` ones; raises ``ParityError`` beyond
    ``tolerance``.

    The difference of each row is taken relative to ``|native| + scale``, where ``scale`` is the
    native scores' interquartile range (or their largest magnitude if that is 0): a score that
    crosses zero is then judged on the scale the scores live on. ``flips`` is filled in by
    ``with_flips`` once the warning threshold is known.

    >>> compare(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0001])).max_rel_diff < 1e-4
    True
    """
    native = np.asarray(native, dtype=np.float64)
    exported = np.asarray(exported, dtype=np.float64)
    for name, scores in (("native", native), ("ONNX", exported)):
        if not np.isfinite(scores).all():
            row = int(np.argmax(~np.isfinite(scores)))
            raise ParityError(f"the {name} score is {scores[row]} at validation row {row}")
    diff = np.abs(exported - native)
    q1, q3 = np.quantile(native, [0.25, 0.75])
    scale = (q3 - q1) or float(np.abs(native).max()) or 1.0
    relative = diff / (np.abs(native) + scale)
    worst = int(np.argmax(relative))
    parity = Parity(
        rows=len(native),
        max_abs_diff=float(diff.max()),
        max_rel_diff=float(relative[worst]),
        tolerance=tolerance,
        flips=0.0,
    )
    if parity.max_rel_diff > tolerance:
        raise ParityError(
            f"the ONNX score differs from the native one by {parity.max_rel_diff:.3g} (relative) "
            f"at validation row {worst} (native {native[worst]:.6g}, ONNX {exported[worst]:.6g}); "
            f"the tolerance is {tolerance:g}"
        )
    return parity


def with_flips(
    parity: Parity, native: np.ndarray, exported: np.ndarray, threshold: float
) -> Parity:
    """``parity`` with the share of rows whose decision at ``threshold`` (raw) differs."""
    flipped = (np.asarray(native) > threshold) != (np.asarray(exported) > threshold)
    return parity.model_copy(update={"flips": float(flipped.mean())})
