"""Every detector's hyper-parameters, as the training config spells them (``kind = "..."``).

Bounds are checked here, before any data is read.
"""

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from edgewatch.agent.schema import Frozen


class Params(Frozen):
    """A detector's hyper-parameters; ``kind`` names the detector."""


class IsolationForestParams(Params):
    kind: Literal["isolation_forest"] = "isolation_forest"
    n_estimators: int = Field(default=100, ge=1, le=5000)
    max_samples: int | Literal["auto"] = "auto"
    max_features: float = Field(default=1.0, gt=0, le=1)
    seed: int = 0
    converter: Literal["compact", "skl2onnx"] = "compact"


class OcsvmParams(Params):
    kind: Literal["ocsvm"] = "ocsvm"
    nu: float = Field(default=0.05, gt=0, le=1)
    gamma: float | Literal["scale", "auto"] = "scale"


class LofParams(Params):
    kind: Literal["lof"] = "lof"
    n_neighbors: int = Field(default=20, ge=1, le=1000)


class GmmParams(Params):
    kind: Literal["gmm"] = "gmm"
    n_components: int = Field(default=4, ge=1, le=256)
    covariance_type: Literal["full", "tied", "diag", "spherical"] = "full"
    reg_covar: float = Field(default=1e-6, gt=0, le=1)
    seed: int = 0


class KmeansParams(Params):
    kind: Literal["kmeans"] = "kmeans"
    n_clusters: int = Field(default=8, ge=1, le=1024)
    radius_quantile: float = Field(default=0.95, gt=0, le=1)
    seed: int = 0


class PcaParams(Params):
    kind: Literal["pca_t2q"] = "pca_t2q"
    variance: float = Field(default=0.9, gt=0, le=1)
    alpha: float = Field(default=0.01, gt=0, lt=0.5)


class _Network(Params):
    epochs: int = Field(default=50, ge=1, le=10_000)
    batch_size: int = Field(default=32, ge=1, le=65_536)
    learning_rate: float = Field(default=1e-3, gt=0, le=1)
    validation_split: float = Field(default=0.1, ge=0, lt=1)
    patience: int = Field(default=5, ge=0, le=1000)
    seed: int = 0

    @model_validator(mode="after")
    def _stopping(self) -> Self:
        if self.patience and not self.validation_split:
            raise ValueError("patience (early stopping) needs a validation_split above 0")
        return self


class AutoencoderParams(_Network):
    kind: Literal["autoencoder"] = "autoencoder"
    hidden: tuple[Annotated[int, Field(ge=1, le=4096)], ...] = Field(
        default=(32, 8), min_length=1, max_length=8
    )


class SequenceAutoencoderParams(_Network):
    kind: Literal["sequence_autoencoder"] = "sequence_autoencoder"
    architecture: Literal["conv", "lstm"] = "conv"
    history: int = Field(default=60, ge=4, le=4096)
    filters: int = Field(default=32, ge=1, le=1024)
    kernel_size: int = Field(default=7, ge=1, le=255)
    dropout: float = Field(default=0.2, ge=0, lt=1)

    @model_validator(mode="after")
    def _halves(self) -> Self:
        if self.architecture == "conv" and self.history % 4:
            raise ValueError(
                f"history ({self.history}) must be a multiple of 4: the conv autoencoder halves "
                "it twice"
            )
        return self


# Detectors that read one feature row; sequence models take a history, so they cannot share an
# ensemble's input.
_RowParams = (
    IsolationForestParams
    | OcsvmParams
    | LofParams
    | GmmParams
    | KmeansParams
    | PcaParams
    | AutoencoderParams
)
MemberParams = Annotated[_RowParams, Field(discriminator="kind")]


class EnsembleParams(Params):
    """Members score the same rows; each score is put on the calibrated scale of its own normal
    scores, then combined."""

    kind: Literal["ensemble"] = "ensemble"
    members: tuple[MemberParams, ...] = Field(min_length=2, max_length=16)
    combine: Literal["mean", "max"] = "mean"


DetectorParams = Annotated[
    _RowParams | SequenceAutoencoderParams | EnsembleParams, Field(discriminator="kind")
]
