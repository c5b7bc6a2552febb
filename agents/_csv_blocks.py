"""Reading many CSV lines at once (pyarrow), giving exactly the fields the csv module would.

The agent's row reader (agents/_source.py) feeds the csv module one line at a time so that it
knows every record's byte offset and can reject a bad line and read on; that costs ~2 µs a
record. A block of whole lines is read here instead, where every line is one of:

- blank (no fields): skipped, as the row reader skips it;
- *plain*: no quote character, no NUL, no carriage return but one just before the line break,
  and width - 1 delimiters (taken on trust first: Arrow refuses a row with another number of
  fields, and a block it refuses has its lines' delimiters counted); or *quoted*: the same, but
  its fields may be quoted, and the whole line matches a pattern of exactly `width` well-formed
  fields (a quoted field closes right before a delimiter or the line's end, and doubles the
  quotes inside it). On such lines Arrow's parser and the csv module (strict) read the same
  fields, so Arrow reads them all;
- anything else: the csv module reads that line alone. A line whose record would not end on that
  line (an open quote) or that the csv module refuses ends the block before it, and the row
  reader takes over from there, so multi-line records, resynchronisation and every reject
  message stay the row reader's own.

Only UTF-8 text is read this way (a newline byte is a line break and nothing else there), with an
ASCII delimiter and quote character (all Arrow's parser takes), and never a line longer than the
csv module's field size limit (which the csv module refuses); a block whose bytes do not decode
is read by the row reader.
"""

from __future__ import annotations

import csv
import io
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, compress, repeat

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from agents._source import WRONG_WIDTH

# what each line is, in the order the block reader prefers them (see the module docstring)
_PLAIN, _QUOTED, _MODULE, _BLANK = 0, 1, 2, 3


@dataclass(frozen=True)
class ParsedBlock:
    """The first `lines` lines of a block (all of them unless one needed the row reader)."""

    lines: int
    line_ends: list[int]  # bytes from the block's start to just after each of those lines
    rows: list[int]  # index of each line read into fields, in order
    columns: dict[str, pa.Array]  # per wanted column, one value per entry of `rows`
    bad: list[tuple[int, str]]  # (line index, problem) of the lines that could not be a row


class BlockReader:
    """Reads blocks for one file's dialect, width and wanted columns."""

    @staticmethod
    def reads(delimiter: str, quotechar: str) -> bool:
        """Whether Arrow's parser takes this dialect: one ASCII character each, NUL excluded."""
        return all(len(c) == 1 and "\x00" < c < "\x80" for c in (delimiter, quotechar))

    def __init__(self, delimiter: str, quotechar: str, width: int, wanted: Sequence[tuple[str, int]]) -> None:
        self._delimiter, self._quotechar, self._width = delimiter, quotechar, width
        self._counting = False  # whether plain lines' delimiters are counted (see parse)
        self._wanted = tuple(wanted)
        d, q = re.escape(delimiter), re.escape(quotechar)
        excluded = r"\r\n\x00"
        fieldre = f"(?:[^{q}{d}{excluded}]*|{q}(?:[^{q}{excluded}]|{q}{q})*{q})"
        self._quoted = f"^{fieldre}(?:{d}{fieldre}){{{width - 1}}}\\r?\\n$"
        names = [f"f{i}" for i in range(width)]
        self._read_options = pcsv.ReadOptions(column_names=names, use_threads=False)
        self._parse_options = pcsv.ParseOptions(
            delimiter=delimiter,
            quote_char=quotechar,
            double_quote=True,
            escape_char=False,
            newlines_in_values=False,
            ignore_empty_lines=False,
        )
        self._convert_options = pcsv.ConvertOptions(
            include_columns=[f"f{index}" for _, index in self._wanted],
            column_types={f"f{index}": pa.string() for _, index in self._wanted},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )

    def parse(self, raw: bytes) -> ParsedBlock | None:
        """The lines of ``raw`` (whole lines, the last ending in a newline) up to the first that
        needs the row reader; None when the bytes are not UTF-8."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
        lines = text.split("\n")
        lines.pop()  # after the last newline
        lengths = (
            [len(line) + 1 for line in lines]
            if text.isascii()
            else [len(line.encode()) + 1 for line in lines]
        )
        ends = list(accumulate(lengths))
        kinds = self._kinds(text, lines)
        self._check_quoted(raw, ends, kinds)
        # plain lines are taken at their word: Arrow refuses a block where any row has the wrong
        # number of fields, and then (for this block and, as such a file may hold more, every
        # later one) delimiters are counted line by line
        if self._counting:
            self._count_delimiters(lines, kinds)
        parsed = self._parse_kinds(raw, lines, ends, kinds)
        if parsed is None and not self._counting:
            self._counting = True
            self._count_delimiters(lines, kinds)
            parsed = self._parse_kinds(raw, lines, ends, kinds)
        return parsed

    def _parse_kinds(
        self, raw: bytes, lines: list[str], ends: list[int], kinds: list[int]
    ) -> ParsedBlock | None:
        count, bad, module_rows, module_values = self._read_by_module(lines, kinds)
        if _MODULE in kinds or _BLANK in kinds:
            fast_rows = [i for i in range(count) if kinds[i] <= _QUOTED]
        else:
            fast_rows = list(range(count))
        if len(fast_rows) == count:  # every line: Arrow reads the bytes as they are
            data = raw[: ends[count - 1]] if count else b""
        else:
            data = ("\n".join([lines[i] for i in fast_rows]) + "\n").encode()
        columns = self._read_fast(data, len(fast_rows))
        if columns is None:
            return None
        rows = fast_rows
        if module_rows:
            order = pc.sort_indices(pa.array(fast_rows + module_rows, pa.int64()))
            for n, (name, _) in enumerate(self._wanted):
                extra = pa.array([values[n] for values in module_values], pa.string())
                columns[name] = pc.take(pa.concat_arrays([columns[name], extra]), order)
            rows = sorted(fast_rows + module_rows)
        return ParsedBlock(count, ends[:count], rows, columns, bad)

    def _kinds(self, text: str, lines: list[str]) -> list[int]:
        """Each line's kind, plain lines' delimiters not counted. Plain Python over the lines: str
        methods run at memchr speed, where building an Arrow array of every line costs more than
        the whole classification."""
        quote = self._quotechar
        kinds = [_BLANK if not line else _QUOTED if quote in line else _PLAIN for line in lines]
        # the csv module refuses a field over its size limit, and the row reader rejects the line;
        # Arrow has no such limit: a line that long is the csv module's
        limit = csv.field_size_limit()
        if lines and max(map(len, lines)) > limit:
            for index, line in enumerate(lines):
                if len(line) > limit:
                    kinds[index] = _MODULE
        if self._unusual(text, lines):
            for index, line in enumerate(lines):
                if line == "\r":
                    kinds[index] = _BLANK
                elif (
                    "\x00" in line
                    or line.startswith("\ufeff")
                    or ("\r" in line and not (line.endswith("\r") and line.count("\r") == 1))
                ):
                    kinds[index] = _MODULE
        return kinds

    def _count_delimiters(self, lines: list[str], kinds: list[int]) -> None:
        """Send the plain lines without exactly width - 1 delimiters to the csv module."""
        delimiter, separators = self._delimiter, self._width - 1
        kinds[:] = [
            _MODULE if kind == _PLAIN and line.count(delimiter) != separators else kind
            for kind, line in zip(kinds, lines, strict=True)
        ]

    def _read_by_module(
        self, lines: list[str], kinds: list[int]
    ) -> tuple[int, list[tuple[int, str]], list[int], list[list[str]]]:
        """The lines Arrow may not read, each by the csv module alone: (lines the block keeps,
        unreadable rows, rows read, their wanted values). The block stops before a line whose
        record does not end on it, or that the csv module refuses."""
        bad: list[tuple[int, str]] = []
        rows: list[int] = []
        values: list[list[str]] = []
        for index in _indexes_of(_MODULE, kinds):
            try:
                records = list(
                    csv.reader(
                        io.StringIO(lines[index] + "\n", newline="\n"),
                        delimiter=self._delimiter,
                        quotechar=self._quotechar,
                        strict=True,
                    )
                )
            except csv.Error:
                return index, bad, rows, values
            if len(records) != 1:
                return index, bad, rows, values
            fields = records[0]
            if not fields:
                continue
            if len(fields) != self._width:
                bad.append((index, WRONG_WIDTH))
                continue
            rows.append(index)
            values.append([fields[i] for _, i in self._wanted])
        return len(lines), bad, rows, values

    @staticmethod
    def _unusual(text: str, lines: list[str]) -> bool:
        """Whether some line may hold a NUL, a byte-order mark, a carriage return other than one
        just before its line break (CRLF files are usual), or nothing but a carriage return."""
        if "\x00" in text or "\ufeff" in text:
            return True
        if "\r" not in text:
            return False
        line_ends = sum(map(str.endswith, lines, repeat("\r")))
        return text.count("\r") != line_ends or "\r" in lines

    def _check_quoted(self, raw: bytes, ends: list[int], kinds: list[int]) -> None:
        """Send the quoted lines that do not match the well-formed pattern to the csv module."""
        quoted = _indexes_of(_QUOTED, kinds)
        if not quoted:
            return
        offsets = array("i", [0])
        offsets.extend(ends)
        # the lines as Arrow strings over the bytes themselves (each with its newline): no copy
        lines = pa.StringArray.from_buffers(len(ends), pa.py_buffer(offsets), pa.py_buffer(raw))
        fits = pc.match_substring_regex(lines.take(pa.array(quoted, pa.int64())), self._quoted)
        for index, fit in zip(quoted, fits.to_pylist(), strict=True):
            if not fit:
                kinds[index] = _MODULE

    def _read_fast(self, data: bytes, lines: int) -> dict[str, pa.Array] | None:
        if not lines:
            return {name: pa.array([], pa.string()) for name, _ in self._wanted}
        try:
            table = pcsv.read_csv(
                io.BytesIO(data),
                read_options=self._read_options,
                parse_options=self._parse_options,
                convert_options=self._convert_options,
            )
        except pa.ArrowException:  # never seen; its message would quote the line: the row reader reads it
            return None
        if table.num_rows != lines:  # never seen: a line read as more or fewer than one row
            return None
        return {name: table.column(f"f{index}").combine_chunks() for name, index in self._wanted}


def _indexes_of(kind: int, kinds: list[int]) -> list[int]:
    return list(compress(range(len(kinds)), map(kind.__eq__, kinds)))
