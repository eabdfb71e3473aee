"""Operators' labels, as the agent exports them (``edgewatch feedback export``), for training:
the windows of alerts labelled ``normal`` (false alarms) join the training rows; those of
alerts labelled ``anomaly`` (confirmed) join the validation rows as anomalies, which an
``f1_optimal`` calibration uses and the metrics measure. ``unsure`` ones are left out.
"""

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgewatch.export.datasets import DataError

LABELS = ("normal", "anomaly", "unsure")


@dataclass(frozen=True)
class Labelled:
    """The labelled windows' feature rows: ``normal[n, features]`` and ``anomaly[m, features]``."""

    normal: np.ndarray
    anomaly: np.ndarray


def load_labels(paths: Sequence[Path], names: Sequence[str]) -> Labelled:
    """The windows labelled in the CSV files at ``paths``, as rows of the features ``names``;
    ``DataError`` says which file and line is wrong."""
    kept: dict[str, list[list[float]]] = {label: [] for label in LABELS}
    for path in paths:
        try:
            with path.open(newline="", encoding="utf-8") as f:
                _read(path, csv.reader(f), names, kept)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"{path}: {e}") from None
    width = len(names)
    return Labelled(
        np.array(kept["normal"], np.float32).reshape(-1, width),
        np.array(kept["anomaly"], np.float32).reshape(-1, width),
    )


def _read(
    path: Path, reader: "csv._reader", names: Sequence[str], kept: dict[str, list[list[float]]]
) -> None:
    header = next(reader, None)
    if header is None:
        raise DataError(f"{path}: empty; expected the CSV of edgewatch feedback export")
    missing = [n for n in ("label", *names) if n not in header]
    if missing:
        raise DataError(
            f"{path}: no column {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}: "
            "the labels must come from a model with this config's features"
        )
    label_at, columns = header.index("label"), [header.index(n) for n in names]
    for line, row in enumerate(reader, 2):
        if len(row) != len(header):
            raise DataError(f"{path}:{line}: {len(row)} fields, the header has {len(header)}")
        label = row[label_at]
        if label not in LABELS:
            raise DataError(f"{path}:{line}: label {label!r} is not one of {', '.join(LABELS)}")
        try:
            values = [float(row[c]) for c in columns]
        except ValueError:
            raise DataError(f"{path}:{line}: a feature value is not a number") from None
        if not all(math.isfinite(v) for v in values):
            raise DataError(f"{path}:{line}: a feature value is not finite")
        kept[label].append(values)
