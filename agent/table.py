"""CSV tables with a header row: the one reader behind the recordings ``replay`` plays and the
data training reads.

The text is UTF-8 (a byte-order mark is dropped); line ends may be ``\\n``, ``\\r\\n`` or a lone
``\\r``; the delimiter is sniffed (one of ``,`` ``;`` tab ``|`` space) unless given, and a header
without any is one column. Blank lines are skipped, and every other line has as many fields as
the header. Each problem is a ``TableError`` that names the file, and the line and column where
it has them.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "run.csv"
>>> _ = path.write_bytes(b"time;x\\r\\n0;1.5\\r\\n1;nan\\r\\n")
>>> table = read_table(path)
>>> table.header, table.numbers("x", finite=False).tolist()
(['time', 'x'], [1.5, nan])
>>> try:
...     table.numbers("x")
... except TableError as e:
...     print(str(e).removeprefix(f"{path}: "))
line 3, column 'x': 'nan' is not finite
"""

import csv
import io
import math
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np

DELIMITERS = ",;\t| "
# Columns that are not sensor channels when nobody names the channels: times and labels.
TIMESTAMP_NAMES = ("timestamp", "datetime", "time", "ts", "date")
LABEL_NAMES = ("label", "anomaly", "is_anomaly", "changepoint", "fault")
# What to do with a row whose time goes back: refuse the file, sort the rows, or drop the row.
TimeOrder = Literal["error", "sort", "drop"]


class TableError(ValueError):
    """A table that cannot be read, with where and why."""


@dataclass(frozen=True)
class Table:
    path: Path
    header: list[str]
    rows: list[list[str]]

    def index(self, name: str) -> int:
        if name not in self.header:
            raise TableError(f"{self.path}: no column {name!r}; the header has {self.header}")
        return self.header.index(name)

    def values(self, name: str) -> list[str]:
        i = self.index(name)
        return [row[i] for row in self.rows]

    def numbers(self, name: str, finite: bool = True) -> np.ndarray:
        """Column ``name`` as float64; ``finite``: NaN and infinities refused too."""
        out = np.empty(len(self.rows))
        for r, value in enumerate(self.values(name)):
            try:
                out[r] = float(value)
            except ValueError:
                raise self.error(r, name, f"{value!r} is not a number") from None
            if finite and not math.isfinite(out[r]):
                raise self.error(r, name, f"{value!r} is not finite")
        return out

    def timestamp(self) -> str | None:
        """The first column named like a timestamp, if any."""
        return next((h for h in self.header if h.lower() in TIMESTAMP_NAMES), None)

    def seconds(self, column: str) -> np.ndarray:
        """Column ``column`` as seconds: numbers, or ISO 8601 times (naive ones are local)."""
        out = np.empty(len(self.rows))
        for r, value in enumerate(self.values(column)):
            try:
                out[r] = float(value)
                continue
            except ValueError:
                pass
            try:
                out[r] = datetime.fromisoformat(value.strip()).timestamp()
            except ValueError:
                raise self.error(
                    r, column, f"{value!r} is neither seconds nor an ISO 8601 time"
                ) from None
        return out

    def in_time_order(
        self, column: str, order: TimeOrder = "error"
    ) -> tuple[np.ndarray, np.ndarray]:
        """The rows to take, in time order by ``column``, and their times. A time that goes
        back is an error (``order="error"``), is sorted into place (``"sort"``, stable), or its
        row is dropped (``"drop"``)."""
        times = self.seconds(column)
        back = np.diff(times) < 0
        if not back.any():
            return np.arange(len(times)), times
        if order == "error":
            raise self.error(
                int(np.argmax(back)) + 1, column,
                "goes back in time (time_order = \"sort\" or \"drop\" takes it)",
            )  # fmt: skip
        if order == "sort":
            rows = np.argsort(times, kind="stable")
        else:
            rows = np.flatnonzero(times >= np.maximum.accumulate(times))
        return rows, times[rows]

    def channels(self) -> list[str]:
        """The columns that hold sensor values: numbers in every row, and not named like a
        timestamp or a label."""
        skip = {*TIMESTAMP_NAMES, *LABEL_NAMES}
        return [
            name
            for i, name in enumerate(self.header)
            if name.lower() not in skip and all(_number(row[i]) for row in self.rows)
        ]

    def error(self, row: int, column: str | None, message: str) -> TableError:
        """A problem of data row ``row`` (0 is the line after the header)."""
        where = f"line {row + 2}" + (f", column {column!r}" if column is not None else "")
        return TableError(f"{self.path}: {where}: {message}")


def read_table(path: Path, raw: bytes | None = None, delimiter: str | None = None) -> Table:
    """The table in the file at ``path`` (or in ``raw``, its bytes when already read)."""
    try:
        text = (path.read_bytes() if raw is None else raw).decode("utf-8-sig")
    except OSError as e:
        raise TableError(f"{path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise TableError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if delimiter is None:
        delimiter = _delimiter(path, text)
    # newline="": the csv module reads line ends itself, a lone "\r" among them.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise TableError(f"{path}: empty file")
        rows = [row for row in reader if row]
    except csv.Error as e:
        raise TableError(f"{path}: line {reader.line_num}: {e}") from None
    if not rows:
        raise TableError(f"{path}: no data rows")
    for r, row in enumerate(rows):
        if len(row) != len(header):
            raise TableError(
                f"{path}: line {r + 2} has {len(row)} fields, the header has {len(header)}"
            )
    return Table(path, header, rows)


def _delimiter(path: Path, text: str) -> str:
    first = text.lstrip("\r\n").splitlines()[0] if text.strip() else ""
    if not any(d in first for d in DELIMITERS):
        return ","
    try:
        return csv.Sniffer().sniff(text[:8192], delimiters=DELIMITERS).delimiter
    except csv.Error:
        raise TableError(f"{path}: cannot tell the delimiter; give it") from None


def read_npy(raw: bytes) -> np.ndarray:
    """The array in the bytes of an ``.npy`` file, no pickles; ``ValueError`` for anything
    that is not one. NumPy's reader fails in many ways on a damaged header (a syntax or
    tokenizer error, an overflow): each of them is this one refusal.

    >>> read_npy(b"\\x93NUMPY\\x01\\x00garbage")
    Traceback (most recent call last):
    ValueError: not an NPY array (ValueError: EOF: reading array header, expected 24935 bytes got 5)
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            array = np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as e:  # a hostile header reaches parsers that raise anything
        raise ValueError(f"not an NPY array ({type(e).__name__}: {e})"[:300]) from None
    if not isinstance(array, np.ndarray):
        raise ValueError("not an NPY array (an archive)")
    return array


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
