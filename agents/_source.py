"""Where records come from: a RecordSource yields (line number, row) pairs, streaming.

A row carries only the columns some mapping reads, so nothing else ever travels further into
the agent. A row that cannot be read (wrong number of fields, bytes that are not valid in the
configured encoding, broken quoting) is yielded as a BadRow: the record is rejected and the run
goes on. Only a source that cannot be opened or read at all stops the run (SourceError).

CSV is the first source; a SQL source (a later issue) only has to honour the same protocol.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from agents._config import CsvSourceSettings
from agents.errors import ConfigError, SourceError

# errors="surrogateescape" turns every undecodable byte into a lone surrogate in this range,
# so one regex search finds a bad line without stopping the stream.
_UNDECODABLE = re.compile("[\udc80-\udcff]")


@dataclass(frozen=True, slots=True)
class BadRow:
    """A source record that could not be read into fields; `problem` says why, without content."""

    problem: str


Row = Mapping[str, str]
SourceRow = tuple[int, Row | BadRow]


class RowStream(Protocol):
    def __iter__(self) -> Iterator[SourceRow]: ...

    def progress(self) -> float | None:
        """Fraction of the source read so far, or None when the size is unknown."""


class RecordSource(Protocol):
    @property
    def name(self) -> str:
        """A stable identity of the source (same file or table, same name): part of batch ids."""

    def open(self, columns: Sequence[str]) -> AbstractContextManager[RowStream]:
        """Check the source has `columns` (ConfigError naming one it lacks) and stream rows."""


class CsvSource:
    """A delimited text export, read with the csv module; the first row names the columns."""

    def __init__(self, settings: CsvSourceSettings) -> None:
        self.settings = settings

    @property
    def name(self) -> str:
        return f"csv:{self.settings.path}"

    def open(self, columns: Sequence[str]) -> AbstractContextManager[RowStream]:
        return self._open(columns)

    @contextmanager
    def _open(self, columns: Sequence[str]) -> Iterator[RowStream]:
        path = self.settings.path
        try:
            handle = path.open("r", encoding=self.settings.encoding, errors="surrogateescape", newline="")
        except OSError as exc:
            raise SourceError(f"{path}: cannot open the source file ({exc.strerror or exc})") from exc
        with handle:
            try:
                size = path.stat().st_size
            except OSError:
                size = 0
            yield _CsvStream(path, handle, self.settings.delimiter, columns, size)


class _CsvStream:
    def __init__(self, path: Path, handle: TextIO, delimiter: str, columns: Sequence[str], size: int) -> None:
        self._path, self._handle, self._size = path, handle, size
        self._reader = csv.reader(handle, delimiter=delimiter, strict=True)
        header = self._next_header()
        if header and header[0].startswith("\ufeff"):
            header[0] = header[0][1:]  # a byte-order mark some spreadsheet tools write
        if any(_UNDECODABLE.search(name) for name in header):
            raise SourceError(f"{path}: the header row is not valid text in the configured encoding")
        names = [name.strip() for name in header]
        self._width = len(names)
        positions: list[tuple[str, int]] = []
        for column in columns:
            if names.count(column) != 1:
                problem = "is missing from" if column not in names else "appears more than once in"
                raise ConfigError(f"{path}: column '{column}' {problem} the header row")
            positions.append((column, names.index(column)))
        self._positions = tuple(positions)

    def _next_header(self) -> list[str]:
        try:
            for header in self._reader:
                if header:
                    return header
        except (csv.Error, OSError) as exc:
            raise SourceError(f"{self._path}: cannot read the header row") from exc
        raise SourceError(f"{self._path}: the file is empty (no header row)")

    def progress(self) -> float | None:
        if not self._size:
            return None
        try:
            done: int = self._handle.buffer.raw.tell()  # type: ignore[attr-defined]
        except (AttributeError, OSError, ValueError):
            return None
        return min(done / self._size, 1.0)

    def __iter__(self) -> Iterator[SourceRow]:
        reader, width, positions = self._reader, self._width, self._positions
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error:
                yield start, BadRow("the line is not well-formed CSV")
                continue
            except OSError as exc:
                raise SourceError(f"{self._path}: read failed ({exc.strerror or exc})") from exc
            if not fields:
                continue  # blank line
            if len(fields) != width:
                yield start, BadRow("wrong number of fields")
            elif _UNDECODABLE.search("".join(fields)):
                yield start, BadRow("bytes that are not valid text in the configured encoding")
            else:
                yield start, {column: fields[index] for column, index in positions}


def open_source(settings: CsvSourceSettings) -> RecordSource:
    return CsvSource(settings)
