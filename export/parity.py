"""The parity gate on a trained detector's export (``agent.parity`` measures it)."""

from typing import NamedTuple

import numpy as np
import onnx

from edgewatch.agent.bundle import Parity
from edgewatch.agent.graph import INPUT, SCORE
from edgewatch.agent.parity import DEFAULT_TOLERANCE, compare
from edgewatch.agent.scorer import open_session
from edgewatch.export.detectors.base import Detector, Progress, quiet


class Exported(NamedTuple):
    """A fitted detector as ONNX, its native and exported scores of the same rows, and how
    near they are."""

    model: onnx.ModelProto
    native: np.ndarray
    exported: np.ndarray
    parity: Parity


def export_checked(
    detector: Detector,
    width: int,
    inputs: np.ndarray,
    tolerance: float = DEFAULT_TOLERANCE,
    progress: Progress = quiet,
) -> Exported:
    """``detector`` exported for rows of ``width`` features, and scored both ways on
    ``inputs``; ``ParityError`` when the scores differ beyond ``tolerance``."""
    model = detector.to_onnx(width)
    progress(f"export: ONNX, {len(model.graph.node)} nodes; checking parity")
    native = detector.score(inputs)
    session = open_session(model.SerializeToString())
    exported = session.run([SCORE], {INPUT: np.ascontiguousarray(inputs, np.float32)})[0]
    return Exported(model, native, exported, compare(native, exported, tolerance))
