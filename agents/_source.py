"""Where records come from: a RecordSource yields (line number, row) pairs, streaming.

A row carries only the columns some mapping reads, so nothing else ever travels further into
the agent. A row that cannot be read (wrong number of fields, bytes that are not valid in the
configured encoding, broken quoting) is yielded as a BadRow: the record is rejected and the run
goes on. Only a source that cannot be opened or read at all stops the run (SourceError).

Every stream can say where it is (`position()`): a JSON-serialisable resume point just after the
last row it yielded. The agent stores positions with its spool and watermark (agents/_state.py)
and hands one back to `open(columns, resume=...)` to read only what is new.
"""

from __future__ import annotations

import _csv
import codecs
import csv
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from agents._config import CsvSourceSettings, SourceSettings
from agents.errors import ConfigError, SourceChangedError, SourceError

if TYPE_CHECKING:
    from agents._csv_blocks import BlockReader, ParsedBlock

WRONG_WIDTH = "wrong number of fields"

# errors="surrogateescape" turns every undecodable byte into a lone surrogate in this range,
# so one regex search finds a bad line without stopping the stream.
_UNDECODABLE = re.compile("[\udc80-\udcff]")
_FINGERPRINT_BYTES = 64 * 1024
# blocks of lines read at once (agents/_csv_blocks.py): big enough that per-block costs vanish,
# small enough to keep the agent's memory flat
_BLOCK_BYTES = 2 << 20
_MIN_BLOCK_BYTES = 64 << 10
_BLOCK_ENCODINGS = frozenset({"utf-8"})
MAX_RECORD_LINES = 200  # a quoted field over more lines than this is a stray quote, not a note
SETTLE_SECONDS = 2.0


class _RecordTooLongError(Exception):
    """Raised from the line feed when one record has run over MAX_RECORD_LINES lines."""


@dataclass(frozen=True, slots=True)
class BadRow:
    """A source record that could not be read into fields; `problem` says why, without content."""

    problem: str


Row = Mapping[str, str]
SourceRow = tuple[int, Row | BadRow]
Position = Mapping[str, object]
"""A resume point, JSON-serialisable; only the source that made it interprets it."""


class RowStream(Protocol):
    def __iter__(self) -> Iterator[SourceRow]: ...

    def progress(self) -> float | None:
        """Fraction of the source read so far, or None when the size is unknown."""

    def position(self) -> Position:
        """Where a later run resumes to read what follows the last row yielded (JSON-serialisable)."""

    def header(self) -> tuple[str, ...]:
        """Every column the source offers, in its order (the CSV header row, the query's result
        columns): what ``agent preview`` lists as leaving or not."""


class RecordSource(Protocol):
    @property
    def name(self) -> str:
        """A stable identity of the source (same file or table, same name): part of batch ids."""

    def open(
        self, columns: Sequence[str], resume: Position | None = None
    ) -> AbstractContextManager[RowStream]:
        """Check the source has `columns` (ConfigError naming one it lacks) and stream rows, starting
        after `resume` (a position an earlier stream gave) or at the beginning."""


class CsvSource:
    """A delimited text export, read with the csv module; the first row names the columns.

    The file is read as bytes, one line at a time, and decoded per line, so the reader knows the
    byte offset of every record boundary: a position is that offset, the line number, and a
    fingerprint of the file around it (SHA-256 of the first 64 KiB and of the 64 KiB before the
    offset). Resuming checks the fingerprint: an export that was appended to resumes where it
    stopped; one that was rewritten or replaced stops with a SourceError instead of guessing.
    """

    def __init__(self, settings: CsvSourceSettings) -> None:
        self.settings = settings

    @property
    def name(self) -> str:
        if self.settings.id is not None:
            return f"csv:id:{self.settings.id}"
        return f"csv:{self.settings.path}"

    def open(
        self, columns: Sequence[str], resume: Position | None = None
    ) -> AbstractContextManager[RowStream]:
        return self._open(columns, resume)

    @contextmanager
    def _open(self, columns: Sequence[str], resume: Position | None) -> Iterator[RowStream]:
        path = self.settings.path
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise SourceError(f"{path}: cannot open the source file ({exc.strerror or exc})") from exc
        with handle:
            yield _CsvStream(path, handle, self.settings, columns, resume)


class _CsvStream:
    def __init__(
        self,
        path: Path,
        handle: BinaryIO,
        settings: CsvSourceSettings,
        columns: Sequence[str],
        resume: Position | None,
    ) -> None:
        self._path, self._handle = path, handle
        self._settings = settings
        self._encoding = settings.encoding
        try:
            info = os.fstat(handle.fileno())
            self._size = info.st_size
            # a last line without its line break is taken as complete only from a file nobody has
            # written to for a while: otherwise it may be a record still being written
            self._settled = time.time() - info.st_mtime >= SETTLE_SECONDS
        except OSError:
            self._size, self._settled = 0, False
        self._offset = 0
        self._undecodable_lines = 0
        self._record_lines: list[int] = []
        self._in_header = True
        self._reader = self._new_reader()
        header = self._next_header()
        self._in_header = False
        if header and header[0].startswith("\ufeff"):
            header[0] = header[0][1:]  # a byte-order mark some spreadsheet tools write
        if any(_UNDECODABLE.search(name) for name in header):
            raise SourceError(f"{path}: the header row is not valid text in the configured encoding")
        names = [name.strip() for name in header]
        self._names = tuple(names)
        self._width = len(names)
        positions: list[tuple[str, int]] = []
        for column in columns:
            if names.count(column) != 1:
                problem = "is missing from" if column not in names else "appears more than once in"
                raise ConfigError(f"{path}: column '{column}' {problem} the header row")
            positions.append((column, names.index(column)))
        self._positions = tuple(positions)
        self._as_row = row_builder(self._positions)
        self._line_base = 0
        if resume is not None:
            self._resume(resume)

    def _new_reader(self) -> _csv.Reader:
        settings = self._settings
        return csv.reader(
            self._lines(), delimiter=settings.delimiter, quotechar=settings.quotechar, strict=True
        )

    def _lines(self) -> Iterator[str]:
        encoding, handle, record = self._encoding, self._handle, self._record_lines
        while True:
            try:
                raw = handle.readline()
            except OSError as exc:
                raise SourceError(f"{self._path}: read failed ({exc.strerror or exc})") from exc
            if not raw:
                return
            if not raw.endswith(b"\n") and not self._settled and not self._in_header:
                handle.seek(self._offset)  # leave it for the next run, when it is complete
                return
            if len(record) >= MAX_RECORD_LINES:
                raise _RecordTooLongError
            record.append(len(raw))
            self._offset += len(raw)
            try:
                yield raw.decode(encoding)
            except UnicodeDecodeError:
                # keep going: the record this line belongs to is rejected, the next ones are read
                self._undecodable_lines += 1
                yield raw.decode(encoding, "surrogateescape")

    def _resume(self, resume: Position) -> None:
        offset, line = resume.get("offset"), resume.get("line")
        if not isinstance(offset, int) or not isinstance(line, int) or offset < self._offset:
            raise SourceError(f"{self._path}: the saved read position does not belong to a CSV source")
        if offset > self._size or self._fingerprint(offset) != resume.get("fingerprint"):
            raise SourceChangedError(
                f"{self._path}: the file no longer starts with what was already sent (it was rewritten "
                "or replaced). Export only new records into it (appending), or give each export a new "
                "file; --from-start re-reads it all, and records already sent in other batches would "
                "then be stored twice"
            )
        try:
            self._handle.seek(offset)
        except OSError as exc:
            raise SourceError(f"{self._path}: cannot seek to the saved position") from exc
        self._offset = offset
        self._line_base = line - self._reader.line_num

    def _fingerprint(self, offset: int) -> str:
        fd = self._handle.fileno()
        try:
            head = os.pread(fd, min(offset, _FINGERPRINT_BYTES), 0)
            tail_start = max(0, offset - _FINGERPRINT_BYTES)
            tail = os.pread(fd, offset - tail_start, tail_start)
        except OSError as exc:
            raise SourceError(f"{self._path}: read failed ({exc.strerror or exc})") from exc
        digest = hashlib.sha256(len(head).to_bytes(8, "big") + head + tail)
        return digest.hexdigest()

    def _next_header(self) -> list[str]:
        try:
            for header in self._reader:
                if header:
                    return header
        except csv.Error as exc:
            raise SourceError(f"{self._path}: cannot read the header row") from exc
        raise SourceError(f"{self._path}: the file is empty (no header row)")

    def progress(self) -> float | None:
        if not self._size:
            return None
        return min(self._offset / self._size, 1.0)

    def header(self) -> tuple[str, ...]:
        return self._names

    def position(self) -> Position:
        return self.position_at(self._offset, self._line_base + self._reader.line_num)

    def _resync(self, record_start: int, first_line: int) -> None:
        """After a broken record that ran over several lines (a stray quote swallows the lines after
        it), reject only its first line and read on from the second as if nothing had happened."""
        offset = record_start + self._record_lines[0]
        try:
            self._handle.seek(offset)
        except OSError as exc:
            raise SourceError(f"{self._path}: cannot seek back after a malformed record") from exc
        self._offset = offset
        self._reader = self._new_reader()
        self._line_base = first_line

    def __iter__(self) -> Iterator[SourceRow]:
        while (row := self._next_row()) is not None:
            yield row

    def _next_row(self) -> SourceRow | None:
        """The next record read by the csv module (blank lines skipped), or None at the end."""
        record = self._record_lines
        while True:
            reader = self._reader
            start = self._line_base + reader.line_num + 1
            record_start = self._offset
            record.clear()
            undecodable = self._undecodable_lines
            try:
                fields = next(reader)
            except StopIteration:
                return None
            except (csv.Error, _RecordTooLongError):
                if len(record) > 1:
                    self._resync(record_start, start)
                return start, BadRow("the line is not well-formed CSV (an unclosed quote?)")
            if not fields:
                continue  # blank line
            if len(fields) != self._width:
                if len(record) > 1:
                    self._resync(record_start, start)
                return start, BadRow(WRONG_WIDTH)
            if undecodable != self._undecodable_lines:
                return start, BadRow("bytes that are not valid text in the configured encoding")
            return start, self._as_row(fields)

    def blocks(self) -> Iterator[RowBlock | SourceRow]:
        """The rest of the file as blocks of many lines (agents/_csv_blocks.py) where it can be
        read that way, and as single records read by the csv module where it cannot."""
        reader = self._block_reader()
        if reader is None:
            yield from self
            return
        size = _BLOCK_BYTES
        while True:
            raw = self._complete_lines(size)
            parsed = reader.parse(raw) if raw else None
            if parsed is not None and parsed.lines:
                block = RowBlock(self._line_base + self._reader.line_num, self._offset, parsed)
                self._skip(parsed.line_ends[-1], parsed.lines)
                yield block
                if parsed.line_ends[-1] == len(raw):
                    size = min(size * 2, _BLOCK_BYTES)
                    continue
            # the row reader reads what the block could not: a short block next time, so that a
            # file full of multi-line records is not decoded again and again
            size = max(size // 4, _MIN_BLOCK_BYTES)
            until = self._offset + (len(raw) if parsed is None and raw else 1)
            while self._offset < until:
                row = self._next_row()
                if row is None:
                    return
                yield row

    def _block_reader(self) -> BlockReader | None:
        try:
            if codecs.lookup(self._encoding).name not in _BLOCK_ENCODINGS:
                return None
            from agents._csv_blocks import BlockReader
        except (LookupError, ImportError):  # pyarrow is not installed: every record by the csv module
            return None
        settings = self._settings
        if not BlockReader.reads(settings.delimiter, settings.quotechar):
            return None
        return BlockReader(settings.delimiter, settings.quotechar, self._width, self._positions)

    def _complete_lines(self, size: int) -> bytes:
        """Up to ``size`` bytes from the current offset, cut after their last line break."""
        try:
            raw = os.pread(self._handle.fileno(), size, self._offset)
        except OSError as exc:
            raise SourceError(f"{self._path}: read failed ({exc.strerror or exc})") from exc
        return raw[: raw.rfind(b"\n") + 1]

    def _skip(self, length: int, lines: int) -> None:
        """Move past ``lines`` lines (``length`` bytes) that a block has read."""
        self._line_base += self._reader.line_num + lines
        self._offset += length
        try:
            self._handle.seek(self._offset)
        except OSError as exc:
            raise SourceError(f"{self._path}: cannot seek past a block") from exc
        self._reader = self._new_reader()

    def position_at(self, offset: int, line: int) -> Position:
        """The position after the line ``line`` ending at byte ``offset``."""
        return {"offset": offset, "line": line, "fingerprint": self._fingerprint(offset)}


@dataclass(frozen=True)
class RowBlock:
    """Lines read as one block: line ``i`` of it is line ``first_line + i + 1`` of the file."""

    first_line: int
    start: int  # byte offset of its first line
    parsed: ParsedBlock


def row_builder(positions: Sequence[tuple[str, int]]) -> Callable[[Sequence[str]], dict[str, str]]:
    """A function from a record's fields to the row of the mapped columns: ``{column: fields[index]}``
    for each (column, index) of ``positions``; every index must be below len(fields).

    Written as one dict display, the way agents/_mapping.py writes the mapper: building each row
    with dict(zip(...)) cost ~1 µs a record more, a tenth of the agent's time (issue 7). Safety as
    there: the emitted text holds only invented names and integer indices; the column names
    (from the config) are passed in the function's namespace, never written into the code."""
    namespace: dict[str, object] = {}
    items = []
    for number, (column, index) in enumerate(positions):
        namespace[f"_c{number}"] = column
        items.append(f"_c{number}: fields[{int(index)}]")
    source = f"def as_row(fields):\n    return {{{', '.join(items)}}}\n"
    exec(compile(source, "<agents row builder>", "exec"), namespace)  # noqa: S102 - see the docstring
    return namespace["as_row"]  # type: ignore[return-value]


def open_source(settings: SourceSettings) -> RecordSource:
    """The source the settings describe; a SQL source needs sqlalchemy, imported only here."""
    if isinstance(settings, CsvSourceSettings):
        return CsvSource(settings)
    from agents._sql_source import SqlSource

    return SqlSource(settings)
