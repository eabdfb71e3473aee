"""Keras autoencoders: dense over one feature vector, Conv1D or LSTM over a short history of them.

Standardisation is a constant layer at the front, so the model takes raw features. The exported
graph computes the reconstruction error itself: ``feature_error`` is the squared error per feature
(averaged over the history for sequence models) in standardised units, and ``score`` is its mean.
"""

import os
from abc import abstractmethod
from typing import Any

import numpy as np
import onnx

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import tensorflow as tf
import tf2onnx

from edgewatch.agent.graph import FEATURE_ERROR, INPUT, OPSET, SCORE
from edgewatch.export.detectors.base import Detector, Progress, float32_rows, quiet
from edgewatch.export.detectors.params import AutoencoderParams, SequenceAutoencoderParams
from edgewatch.export.onnxgraph import finish


class _EpochProgress(keras.callbacks.Callback):
    def __init__(self, kind: str, epochs: int, progress: Progress) -> None:
        super().__init__()
        self.kind, self.epochs, self.progress = kind, epochs, progress

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in (logs or {}).items())
        self.progress(f"{self.kind}: epoch {epoch + 1}/{self.epochs}: {shown}")


class _Autoencoder(Detector):
    explains = True
    params: AutoencoderParams | SequenceAutoencoderParams

    @abstractmethod
    def _network(self, shape: tuple[int, ...]) -> keras.Model:
        """The reconstruction network on standardised inputs of ``shape``."""

    def fit(self, inputs: np.ndarray, progress: Progress = quiet) -> None:
        p = self.params
        rows = float32_rows(inputs)
        keras.utils.set_random_seed(p.seed)
        flat = rows.reshape(-1, rows.shape[-1])
        mean = flat.mean(axis=0, dtype=np.float64)
        std = flat.std(axis=0, dtype=np.float64)
        std[std < 1e-12 * np.maximum(np.abs(mean), 1)] = 1.0
        shape = rows.shape[1:]
        raw = keras.Input(shape, name=INPUT)
        standardised = keras.layers.Rescaling(
            scale=(1 / std).astype(np.float32), offset=(-mean / std).astype(np.float32)
        )(raw)
        network = self._network(shape)
        reconstruction = network(standardised)
        trainer = keras.Model(raw, reconstruction)
        trainer.compile(optimizer=keras.optimizers.Adam(p.learning_rate), loss="mse")
        callbacks: list[Any] = [_EpochProgress(self.kind, p.epochs, progress)]
        if p.patience:
            callbacks.append(
                keras.callbacks.EarlyStopping(patience=p.patience, restore_best_weights=True)
            )
        target = ((rows - mean) / std).astype(np.float32)
        trainer.fit(
            rows,
            target,
            epochs=p.epochs,
            batch_size=p.batch_size,
            validation_split=p.validation_split,
            shuffle=True,
            callbacks=callbacks,
            verbose=0,
        )
        error = keras.ops.square(standardised - reconstruction)
        if len(shape) == 2:
            error = keras.ops.mean(error, axis=1)
        self.model = keras.Model(raw, {SCORE: keras.ops.mean(error, axis=-1), FEATURE_ERROR: error})

    def _predict(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = self.model.predict(float32_rows(inputs), verbose=0)
        return out

    def score(self, inputs: np.ndarray) -> np.ndarray:
        return self._predict(inputs)[SCORE].astype(np.float64)

    def feature_error(self, inputs: np.ndarray) -> np.ndarray:
        return self._predict(inputs)[FEATURE_ERROR]

    def to_onnx(self, width: int) -> onnx.ModelProto:
        shape = [None, width] if self.history == 1 else [None, self.history, width]
        signature = [tf.TensorSpec(shape, tf.float32, name=INPUT)]
        model = self.model

        @tf.function(input_signature=signature)
        def graph(features: tf.Tensor) -> dict[str, tf.Tensor]:
            out = model(features)
            return {name: tf.identity(out[name], name=name) for name in (SCORE, FEATURE_ERROR)}

        converted, _ = tf2onnx.convert.from_function(graph, input_signature=signature, opset=OPSET)
        # tf2onnx's graph, under the opsets every other export uses.
        return finish(converted.graph)


class AutoencoderDetector(_Autoencoder):
    kind = "autoencoder"
    params: AutoencoderParams

    def _network(self, shape: tuple[int, ...]) -> keras.Model:
        width = shape[-1]
        hidden = [*self.params.hidden, *reversed(self.params.hidden[:-1])]
        return keras.Sequential(
            [
                keras.Input(shape),
                *(keras.layers.Dense(units, activation="relu") for units in hidden),
                keras.layers.Dense(width),
            ]
        )


class SequenceAutoencoderDetector(_Autoencoder):
    """SKAB's Conv-AE shape (two strided Conv1D layers down, two transposed ones up), or an LSTM
    encoder-decoder."""

    kind = "sequence_autoencoder"
    params: SequenceAutoencoderParams

    def __init__(self, params: SequenceAutoencoderParams) -> None:
        super().__init__(params)
        self.history = params.history

    def _network(self, shape: tuple[int, ...]) -> keras.Model:
        p = self.params
        steps, width = shape
        if p.architecture == "lstm":
            return keras.Sequential(
                [
                    keras.Input(shape),
                    keras.layers.LSTM(p.filters),
                    keras.layers.RepeatVector(steps),
                    keras.layers.LSTM(p.filters, return_sequences=True),
                    keras.layers.TimeDistributed(keras.layers.Dense(width)),
                ]
            )
        conv = {"kernel_size": p.kernel_size, "padding": "same", "strides": 2, "activation": "relu"}
        return keras.Sequential(
            [
                keras.Input(shape),
                keras.layers.Conv1D(p.filters, **conv),
                keras.layers.Dropout(p.dropout),
                keras.layers.Conv1D(max(p.filters // 2, 1), **conv),
                keras.layers.Conv1DTranspose(max(p.filters // 2, 1), **conv),
                keras.layers.Dropout(p.dropout),
                keras.layers.Conv1DTranspose(p.filters, **conv),
                keras.layers.Conv1DTranspose(width, kernel_size=p.kernel_size, padding="same"),
            ]
        )
