"""The model bundle: the contract between training and the gateway.

A bundle is a directory, or a .tar of one, holding the ONNX model, ``manifest.json`` and, when it
is signed, ``manifest.sig``: a raw 64-byte Ed25519 signature over the exact bytes of the manifest.
The manifest records the sha256 of every other file, so the signature covers the whole bundle.
``verify_bundle`` is the only way the agent reads one: it refuses a bundle with a missing, extra
or changed file, a bad signature or a manifest that does not describe itself consistently.
"""

import hashlib
import itertools
import json
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, Self

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import (
    Field,
    FiniteFloat,
    StringConstraints,
    ValidationError,
    model_validator,
)

from edgewatch.agent.calibration import Rate, ScoreScale, Thresholds
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.regimes import Regimes
from edgewatch.agent.schema import Frozen, problems

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MAX_BUNDLE_BYTES = 256 << 20
MAX_FILES = 64

ModelKind = Literal[
    "isolation_forest",
    "ocsvm",
    "lof",
    "gmm",
    "kmeans",
    "pca_t2q",
    "autoencoder",
    "sequence_autoencoder",
    "ensemble",
    "gaussian",
]
FileName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class BundleError(ValueError):
    """A bundle the agent must not load, and why."""


class Tensor(Frozen):
    """An ONNX input or output; ``None`` in a shape is the batch axis."""

    name: Name
    dtype: Literal["float32"]
    shape: tuple[Annotated[int, Field(ge=1)] | None, ...] = Field(min_length=1, max_length=3)


class ModelInfo(Frozen):
    """What the ONNX file computes and how to feed it.

    ``score`` (higher is more anomalous) is always an output, one value per row.
    ``feature_error``, when present, is the per-feature part of the score that explains it.
    ``history`` is how many consecutive feature vectors one input row holds: 1, or more for
    sequence models, whose input is ``[n, history, features]``.
    """

    kind: ModelKind
    file: FileName = "model.onnx"
    input: Tensor
    outputs: tuple[Tensor, ...] = Field(min_length=1, max_length=4)
    opsets: dict[str, Annotated[int, Field(ge=1)]]
    history: int = Field(default=1, ge=1, le=10_000)
    members: tuple[ModelKind, ...] = ()

    @model_validator(mode="after")
    def _shapes(self) -> Self:
        names = [t.name for t in self.outputs]
        if "score" not in names:
            raise ValueError(f"outputs must include 'score', got {names}")
        want = 3 if self.history > 1 else 2
        if len(self.input.shape) != want or self.input.shape[0] is not None:
            raise ValueError(
                f"input shape must be [None, {'history, ' if want == 3 else ''}features], "
                f"got {list(self.input.shape)}"
            )
        if want == 3 and self.input.shape[1] != self.history:
            raise ValueError(f"input shape {list(self.input.shape)} does not hold {self.history}")
        if (self.kind == "ensemble") != bool(self.members):
            raise ValueError("members are given for an ensemble, and only for one")
        return self

    @property
    def width(self) -> int:
        """Features per row."""
        width = self.input.shape[-1]
        assert width is not None
        return width


class Parity(Frozen):
    """How far onnxruntime's scores are from the native model's on validation rows.

    ``max_rel_diff`` is max |onnx - native| / (|native| + scale), where ``scale`` is the spread
    of the native scores, so scores near zero are not judged by a vanishing denominator.
    ``flips`` is the share of rows on the other side of the warning threshold.
    """

    rows: int = Field(ge=1)
    max_abs_diff: FiniteFloat = Field(ge=0)
    max_rel_diff: FiniteFloat = Field(ge=0)
    tolerance: FiniteFloat = Field(gt=0)
    flips: Rate


class Training(Frozen):
    """Where the model came from."""

    data_sha256: Sha256
    rows: dict[Name, Annotated[int, Field(ge=0)]]
    hyperparameters: dict[Name, str | int | float | bool | None]
    metrics: dict[Name, FiniteFloat]
    parity: Parity
    libraries: dict[Name, Name]


class FeatureStats(Frozen):
    """Each feature's mean and standard deviation on the training rows: what an alert's
    explanation measures deviations against."""

    mean: tuple[FiniteFloat, ...]
    std: tuple[Annotated[float, Field(gt=0, allow_inf_nan=False)], ...]

    @classmethod
    def of(cls, rows: np.ndarray) -> "FeatureStats":
        """The statistics of ``rows[n, features]``; a constant feature gets a std of 1."""
        std = rows.std(axis=0, dtype=np.float64)
        return cls(
            mean=tuple(rows.mean(axis=0, dtype=np.float64)),
            std=tuple(np.where(std > 0, std, 1.0)),
        )


class Manifest(Frozen):
    """``manifest.json``: everything the agent needs to know about a model before it runs it."""

    schema_version: Literal[1]
    name: Name
    version: Name
    created_at: datetime
    edgewatch_version: Name
    feature_spec: FeatureSpec
    feature_names: tuple[str, ...]
    model: ModelInfo
    score: ScoreScale
    thresholds: Thresholds
    training: Training
    feature_stats: FeatureStats | None = None
    regimes: Regimes | None = None
    # "on_site": learned by the agent from the machine's own baseline (``agent.onsite``).
    origin: Literal["trained", "on_site"] = "trained"
    files: dict[FileName, Sha256] = Field(min_length=1, max_length=MAX_FILES)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.feature_names != self.feature_spec.feature_names:
            raise ValueError("feature_names differ from the names the feature_spec derives")
        if self.model.width != len(self.feature_names):
            raise ValueError(
                f"the model takes {self.model.width} features per row, the spec gives "
                f"{len(self.feature_names)}"
            )
        if self.feature_stats is not None and not (
            len(self.feature_stats.mean) == len(self.feature_stats.std) == self.model.width
        ):
            raise ValueError(f"feature_stats must give {self.model.width} means and stds")
        if self.regimes is not None and (
            self.model.history != 1 or max(self.regimes.features) >= self.model.width
        ):
            raise ValueError("regimes key single rows, on features the model takes")
        if self.model.file not in self.files:
            raise ValueError(f"model file {self.model.file!r} is not listed in files")
        if {MANIFEST, SIGNATURE} & self.files.keys():
            raise ValueError(f"files must not list {MANIFEST} or {SIGNATURE}")
        return self


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its manifest and the bytes of its files."""

    manifest: Manifest
    files: dict[str, bytes]
    signed: bool
    manifest_sha256: str

    @property
    def model_bytes(self) -> bytes:
        return self.files[self.manifest.model.file]

    @property
    def model_sha256(self) -> str:
        return self.manifest.files[self.manifest.model.file]


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file (``openssl pkey -pubout``) or 32 raw bytes."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BundleError(f"public key {path}: {e.strerror}") from None
    try:
        key = (
            Ed25519PublicKey.from_public_bytes(data)
            if len(data) == 32
            else load_pem_public_key(data)
        )
    except ValueError as e:
        raise BundleError(f"public key {path}: not an Ed25519 key ({e})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"public key {path}: not an Ed25519 key")
    return key


def verify_bundle(path: Path, public_key: Ed25519PublicKey | None = None) -> Bundle:
    """Read and check the bundle at ``path`` (a directory or a .tar).

    With a ``public_key``, the bundle must carry a signature made with its private key, and it is
    checked before anything but the manifest is read: in a tar, ``manifest.json`` and
    ``manifest.sig`` come first, as ``export.bundle`` writes them. Any problem raises
    ``BundleError`` with the reason.
    """
    if "\0" in str(path):
        raise BundleError(f"{str(path)!r}: a path cannot hold a NUL byte")
    members = _tar_members(path) if path.is_file() else _directory_members(path)
    files: dict[str, bytes] = {}
    for name, data in members:
        if name in files:
            raise BundleError(f"{path}: {name} twice")
        files[name] = data
        if len(files) == 2 and public_key is not None:
            _check_signature(path, files, public_key)
    if public_key is not None and len(files) < 2:
        _check_signature(path, files, public_key)
    raw = files.pop(MANIFEST, None)
    if raw is None:
        raise BundleError(f"{path}: no {MANIFEST}")
    signature = files.pop(SIGNATURE, None)
    manifest = parse_manifest(path, raw)
    listed, present = manifest.files.keys(), files.keys()
    if missing := sorted(listed - present):
        raise BundleError(f"{path}: missing {', '.join(missing)}")
    if extra := sorted(present - listed):
        raise BundleError(f"{path}: {', '.join(extra)} not listed in the manifest")
    for name, data in files.items():
        if hashlib.sha256(data).hexdigest() != manifest.files[name]:
            raise BundleError(f"{path}: {name} does not match its sha256 in the manifest")
    return Bundle(
        manifest,
        files,
        signed=signature is not None,
        manifest_sha256=hashlib.sha256(raw).hexdigest(),
    )


def _check_signature(path: Path, first: dict[str, bytes], public_key: Ed25519PublicKey) -> None:
    """The bundle's first two members are its manifest and a valid signature of it."""
    if first.keys() != {MANIFEST, SIGNATURE}:
        raise BundleError(
            f"{path}: not signed, and a public key is configured "
            f"({MANIFEST} and {SIGNATURE} must come first)"
        )
    try:
        public_key.verify(first[SIGNATURE], first[MANIFEST])
    except InvalidSignature:
        raise BundleError(f"{path}: the signature does not match the manifest") from None


def parse_manifest(path: Path, raw: bytes) -> Manifest:
    """The manifest in ``raw``, read from the bundle at ``path``; ``BundleError`` says what is
    wrong with it."""
    try:
        return Manifest.model_validate(json.loads(raw))
    except ValidationError as e:
        found = "; ".join(problems(e, root="manifest"))
        raise BundleError(f"{path}: {MANIFEST}: {found}"[:2000]) from None
    except (ValueError, RecursionError) as e:  # not UTF-8 or JSON, too deep, too many digits
        raise BundleError(
            f"{path}: {MANIFEST} is not valid JSON ({type(e).__name__}: {e})"[:2000]
        ) from None


def _directory_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """A directory's files, the manifest and its signature first."""
    if not path.is_dir():
        raise BundleError(f"{path}: no such bundle (a directory or a .tar)")
    entries = list(itertools.islice(path.iterdir(), MAX_FILES + 1))
    if len(entries) > MAX_FILES:
        raise BundleError(f"{path}: more than {MAX_FILES} files")
    total = 0
    for entry in sorted(entries, key=lambda e: (e.name not in (MANIFEST, SIGNATURE), e.name)):
        if entry.is_symlink() or not entry.is_file():
            raise BundleError(f"{path}: {entry.name} is not a regular file")
        total += entry.stat().st_size
        if total > MAX_BUNDLE_BYTES:
            raise BundleError(f"{path}: larger than {MAX_BUNDLE_BYTES >> 20} MiB")
        yield entry.name, entry.read_bytes()


def _tar_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """A tar's files in their order, read as a stream: nothing is listed ahead, so a tar of
    endless members costs no more than ``MAX_FILES`` of them."""
    try:
        with tarfile.open(path, "r|*") as tar:
            total = 0
            for count, member in enumerate(tar, 1):
                if count > MAX_FILES:
                    raise BundleError(f"{path}: more than {MAX_FILES} files")
                if not member.isfile() or "/" in member.name:
                    raise BundleError(
                        f"{path}: member {member.name!r} is not a single regular file at the top"
                    )
                total += member.size
                if total > MAX_BUNDLE_BYTES:
                    raise BundleError(f"{path}: larger than {MAX_BUNDLE_BYTES >> 20} MiB")
                data = tar.extractfile(member)
                assert data is not None
                yield member.name, data.read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise BundleError(f"{path}: not a readable tar ({e})") from None
