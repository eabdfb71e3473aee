"""The training config: a TOML file naming the data, the feature spec, the model and the
calibration policy.

>>> config = parse_config('''
... name = "pump"
... [data]
... type = "simulate"
... duration = 600
... [features]
... kind = "process"
... channels = ["temperature", "pressure", "current", "flow"]
... [model]
... kind = "pca_t2q"
... ''')
>>> config.model.kind, config.calibration.budget
('pca_t2q', (0.01, 0.001))
"""

import tomllib
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, NonNegativeInt, ValidationError, model_validator

from edgewatch.agent.bundle import Name
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.parity import DEFAULT_TOLERANCE
from edgewatch.agent.schema import Frozen, problems
from edgewatch.agent.table import TimeOrder
from edgewatch.export.detectors.params import DetectorParams
from edgewatch.sim.machine import Fault, Machine


class ConfigError(ValueError):
    """A config that cannot be used; one problem per line."""


class _Rows(Frozen):
    # Rows [start, end) of the file (after time ordering), when not all of them.
    rows: tuple[NonNegativeInt, NonNegativeInt] | None = None

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.rows is not None and self.rows[1] <= self.rows[0]:
            raise ValueError(f"rows {list(self.rows)}: the end must come after the start")
        return self


class CsvData(_Rows):
    """A CSV file; ``columns`` (by default the channels' own names) become the feature spec's
    channels, in order. A time that goes back is refused, or sorted, or its row dropped."""

    type: Literal["csv"]
    path: Path
    delimiter: str | None = Field(default=None, min_length=1, max_length=1)
    timestamp: str | None = None
    label: str | None = None
    columns: tuple[str, ...] | None = Field(default=None, min_length=1)
    time_order: TimeOrder = "error"


class NpyData(_Rows):
    """Samples x columns; ``columns`` (indices, by default all) become the feature spec's
    channels, in order."""

    type: Literal["npy"]
    path: Path
    columns: tuple[int, ...] | None = Field(default=None, min_length=1)


class SimulatedData(Frozen):
    """A simulated run of the machine the feature spec describes (waveform or process)."""

    type: Literal["simulate"]
    duration: float = Field(gt=0, le=1_000_000)
    seed: int = 0
    faults: tuple[Fault, ...] = ()
    machine: Machine = Machine()


DataSource = Annotated[CsvData | NpyData | SimulatedData, Field(discriminator="type")]
Share = Annotated[float, Field(gt=0, lt=1)]


class Calibration(Frozen):
    """How thresholds are chosen, on the last ``validation`` share of the rows (time order)."""

    policy: Literal["false_alarm_budget", "f1_optimal"] = "false_alarm_budget"
    budget: tuple[Share, Share] = (0.01, 0.001)
    validation: float = Field(default=0.2, ge=0.05, le=0.8)
    parity_tolerance: float = Field(default=DEFAULT_TOLERANCE, gt=0, le=0.1)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.budget[1] > self.budget[0]:
            raise ValueError(
                "budget is (warning, critical): the critical false-alarm rate must not exceed "
                "the warning one"
            )
        return self


class TrainConfig(Frozen):
    name: Name
    version: Name = "1"
    data: DataSource
    features: FeatureSpec
    model: DetectorParams
    calibration: Calibration = Calibration()

    @model_validator(mode="after")
    def _fits(self) -> Self:
        if isinstance(self.data, SimulatedData) and self.features.kind == "record":
            raise ValueError("the simulator makes waveform or process data, not records")
        return self


def parse_config(text: str, base: Path = Path()) -> TrainConfig:
    """A validated config from TOML ``text``; relative data paths are taken from ``base``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}") from None
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("path"), str):
        raw["data"] = {**data, "path": str(base / data["path"])}
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError("\n".join(problems(e))) from None


def load_config(path: Path) -> TrainConfig:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        return parse_config(text, path.parent)
    except ConfigError as e:
        raise ConfigError("\n".join(f"{path}: {line}" for line in str(e).splitlines())) from None
