"""Small helpers shared by the dataset readers: CSV tables with required columns, layout checks."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path
from typing import Iterable, Iterator

from semantic_genesis.errors import DataError, DatasetLayoutError, describe_path


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is a folder, else raise :class:`DatasetLayoutError` naming ``what``."""
    if not path.is_dir():
        raise DatasetLayoutError(f"{describe_path(path)}: {what} folder not found")
    return path


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is a file, else raise :class:`DatasetLayoutError` naming ``what``."""
    if not path.is_file():
        raise DatasetLayoutError(f"{describe_path(path)}: {what} not found")
    return path


class CsvTable:
    """A CSV file read into rows of strings, with named access to required columns.

    Column names are compared after stripping spaces (SIIM-ACR's header is ``ImageId, EncodedPixels``).
    Row numbers in error messages are 1-based line numbers of the file (the header is line 1). A file
    whose name ends in ``.gz`` is decompressed on the fly (MIMIC-CXR ships ``*.csv.gz``).

    Args:
        path: the CSV file.
        required: column names that must be present.
        what: how the dataset calls this file, used in messages (e.g. ``"LUNA16 candidates.csv"``).

    Raises:
        DatasetLayoutError: if the file is missing, empty, or lacks a required column (the message
            names the file, the missing column and the columns it found).
    """

    def __init__(self, path: str | Path, required: Iterable[str], what: str | None = None):
        self.path = Path(path)
        self.what = what or self.path.name
        require_file(self.path, self.what)
        try:
            if self.path.suffix == ".gz":
                with gzip.open(self.path, "rt", newline="", encoding="utf-8-sig") as handle:
                    rows = list(csv.reader(handle))
            else:
                with open(self.path, newline="", encoding="utf-8-sig") as handle:
                    rows = list(csv.reader(handle))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"{describe_path(self.path)}: {self.what} is not a readable CSV file ({exc})") from None
        if not rows:
            raise DatasetLayoutError(f"{describe_path(self.path)}: {self.what} is empty (no header row)")
        self.header = [name.strip() for name in rows[0]]
        self._index = {}
        for i, name in enumerate(self.header):
            self._index.setdefault(name, i)
        missing = [name for name in required if name not in self._index]
        if missing:
            raise DatasetLayoutError(
                f"{describe_path(self.path)}: {self.what} has no column {missing[0]!r}"
                + (f" (also missing: {', '.join(map(repr, missing[1:]))})" if len(missing) > 1 else "")
                + f"; columns found: {', '.join(repr(h) for h in self.header if h)}"
            )
        self._rows = [(line, row) for line, row in enumerate(rows[1:], start=2) if any(c.strip() for c in row)]

    def __len__(self) -> int:
        return len(self._rows)

    def rows(self) -> Iterator[tuple[int, "CsvRow"]]:
        """Yield ``(line_number, row)`` for every non-blank data row."""
        for line, row in self._rows:
            yield line, CsvRow(self, line, row)


class CsvRow:
    """One row of a :class:`CsvTable`; ``row[name]`` gives the stripped string of a column."""

    def __init__(self, table: CsvTable, line: int, values: list[str]):
        self.table = table
        self.line = line
        self.values = values

    def where(self) -> str:
        """``"<file> row <line>"`` for error messages."""
        return f"{describe_path(self.table.path)} row {self.line}"

    def __getitem__(self, name: str) -> str:
        index = self.table._index[name]
        if index >= len(self.values):
            raise DataError(f"{self.where()}: missing value for column {name!r}")
        return self.values[index].strip()

    def get(self, name: str, default: str = "") -> str:
        """The value of column ``name``, or ``default`` if the column or the value is absent."""
        index = self.table._index.get(name)
        if index is None or index >= len(self.values):
            return default
        return self.values[index].strip()

    def float(self, name: str) -> float:
        """Column ``name`` as a float; :class:`DataError` naming the row if it is not a number."""
        text = self[name]
        try:
            return float(text)
        except ValueError:
            raise DataError(f"{self.where()}: column {name!r} should be a number, got {text!r}") from None

    def int(self, name: str) -> int:
        """Column ``name`` as an int; :class:`DataError` naming the row if it is not an integer."""
        text = self[name]
        try:
            return int(text)
        except ValueError:
            pass
        try:
            value = float(text)  # e.g. "1.0" written by spreadsheet tools
        except ValueError:
            value = float("nan")
        if not value.is_integer():
            raise DataError(f"{self.where()}: column {name!r} should be an integer, got {text!r}")
        return int(value)
