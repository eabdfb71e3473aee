"""Scoring feature rows with a bundle's ONNX model in onnxruntime."""

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from edgewatch.agent.bundle import Bundle, BundleError, ModelInfo, Tensor

_ORT_TYPES = {"float32": "tensor(float)"}


def open_session(model: bytes, threads: int = 1) -> ort.InferenceSession:
    """An onnxruntime CPU session on ``threads`` intra-op threads, run sequentially: on a gateway
    a model shares a few cores with the featurizer and the rest of the pipeline."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class Scores:
    """One model run: ``raw`` and ``calibrated`` scores per row (NaN for a row of a regime its
    model never saw), and the per-feature error when the model explains its score."""

    raw: np.ndarray
    calibrated: np.ndarray
    feature_error: np.ndarray | None


class Scorer:
    """Scores rows of features with a verified bundle's model."""

    def __init__(self, bundle: Bundle, threads: int = 1) -> None:
        self.manifest = bundle.manifest
        try:
            self.session = open_session(bundle.model_bytes, threads)
        except (ort_errors.Fail, ort_errors.InvalidProtobuf, ort_errors.InvalidGraph) as e:
            raise BundleError(
                f"{self.manifest.model.file}: onnxruntime cannot load it ({e})"
            ) from e
        _check_signature(self.manifest.model, self.session)
        self._input = self.manifest.model.input.name
        self._outputs = ["score"]
        if any(t.name == "feature_error" for t in self.manifest.model.outputs):
            self._outputs.append("feature_error")

    def __call__(self, rows: np.ndarray) -> Scores:
        outputs = self.session.run(self._outputs, {self._input: rows})
        raw = outputs[0]
        regimes, scale = self.manifest.regimes, self.manifest.score
        calibrated = scale(raw) if regimes is None else regimes.calibrate(rows, raw, scale)
        return Scores(raw, calibrated, outputs[1] if len(outputs) > 1 else None)


def _check_signature(info: ModelInfo, session: ort.InferenceSession) -> None:
    """The model's inputs and outputs must be the ones the manifest promises."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise BundleError(f"the model has {len(inputs)} inputs, the manifest describes one")
    _same(info.input, inputs[0], "input")
    actual = {o.name: o for o in session.get_outputs()}
    for tensor in info.outputs:
        if tensor.name not in actual:
            raise BundleError(f"the model has no output {tensor.name!r}; it has {list(actual)}")
        _same(tensor, actual[tensor.name], "output")


def _same(promised: Tensor, arg: ort.NodeArg, role: str) -> None:
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    if arg.name != promised.name or arg.type != _ORT_TYPES[promised.dtype]:
        raise BundleError(
            f"{role} {arg.name!r} ({arg.type}) differs from the manifest's {promised.name!r} "
            f"({promised.dtype})"
        )
    if shape != promised.shape:
        raise BundleError(
            f"{role} {arg.name!r} has shape {list(shape)}, the manifest says {list(promised.shape)}"
        )
