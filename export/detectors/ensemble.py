"""Ensembles: each member's score is put on the calibrated scale of that member's scores on the
training rows, and the ensemble's score is the mean or the maximum of those.

The exported graph holds every member's graph, fed from the one input, and the same piecewise
linear maps that ``ScoreScale`` applies.
"""

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto

from edgewatch.agent.calibration import ScoreScale, fit_scale
from edgewatch.agent.graph import SCORE
from edgewatch.export.detectors.base import Detector, Progress, quiet
from edgewatch.export.detectors.params import EnsembleParams
from edgewatch.export.onnxgraph import Graph


class EnsembleDetector(Detector):
    kind = "ensemble"
    params: EnsembleParams

    def __init__(self, params: EnsembleParams, build: Callable[..., Detector]) -> None:
        super().__init__(params)
        self.members = [build(member) for member in params.members]

    def fit(self, inputs: np.ndarray, progress: Progress = quiet) -> None:
        self.scales: list[ScoreScale] = []
        for i, member in enumerate(self.members):
            progress(f"ensemble: member {i + 1}/{len(self.members)} ({member.kind})")
            member.fit(inputs, progress)
            self.scales.append(fit_scale(member.score(inputs)))

    def score(self, inputs: np.ndarray) -> np.ndarray:
        normalised = np.stack(
            [scale(m.score(inputs)) for m, scale in zip(self.members, self.scales, strict=True)]
        )
        return normalised.max(axis=0) if self.params.combine == "max" else normalised.mean(axis=0)

    def hyperparameters(self) -> dict[str, str | int | float | bool | None]:
        flat: dict[str, str | int | float | bool | None] = {"combine": self.params.combine}
        for i, member in enumerate(self.members):
            flat |= {f"members.{i}.{k}": v for k, v in member.hyperparameters().items()}
        return flat

    def to_onnx(self, width: int) -> onnx.ModelProto:
        g = Graph(width)
        scores = []
        for i, (member, scale) in enumerate(zip(self.members, self.scales, strict=True)):
            raw = g.op("Cast", g.embed(member.to_onnx(width), f"m{i}_"), to=TensorProto.DOUBLE)
            scores.append(g.op("Unsqueeze", _piecewise(g, raw, scale), g.const(np.array([1]))))
        stacked = g.op("Concat", *scores, axis=1)
        reduce = "ReduceMax" if self.params.combine == "max" else "ReduceMean"
        return g.model({SCORE: g.op(reduce, stacked, axes=[1], keepdims=0)})


def _piecewise(g: Graph, raw: str, scale: ScoreScale) -> str:
    """``scale(raw)`` in the graph: segments summed, flat below the first knot, extended along
    the last segment above the last."""
    knots = np.array(scale.raw)
    values = np.array(scale.calibrated)
    slopes = np.diff(values) / np.diff(knots)
    x = g.op("Unsqueeze", raw, g.const(np.array([1])))
    clipped = g.op("Min", g.op("Max", x, g.const(knots[:-1])), g.const(knots[1:]))
    inside = g.op("Mul", g.op("Sub", clipped, g.const(knots[:-1])), g.const(slopes))
    total = g.op("ReduceSum", inside, g.const(np.array([1])), keepdims=0)
    beyond = g.op("Max", g.op("Sub", raw, g.const(knots[-1:])), g.const(np.zeros(1)))
    extension = g.op("Mul", beyond, g.const(slopes[-1:]))
    return g.op("Add", g.op("Add", total, g.const(values[:1])), extension)
