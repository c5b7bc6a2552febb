"""The mapper over a block of rows at once (pyarrow), for the rows whose result it can vouch for.

The row mapper (agents/_mapping.py) is the reference: one Python function call a row, ~4 µs of
the agent's ~9 µs a record, and the agent is what limits ingest (issue 7). This mapper computes
the same record with array kernels for every row whose mapped fields are in the plain shapes it
knows: ASCII text, dates in an ISO format that read back as the text they came from, decimal
numbers. Any
other row (accents, a date it cannot check, a value outside a domain, an empty field...) is
marked for the row mapper, which gives its record or its reject. A row's record or reject
therefore never depends on which path read it; tests/agents/test_agent_columnar.py compares the
two paths on generated rows. Configurations with a field it does not know (a date format that
is not ISO) get no columnar mapper at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from agents._config import DateField, HoursBetweenField, PseudonymiseField

# what str.strip() removes among ASCII characters: rows with other characters take the row path
_ASCII_SPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"
_NOT_ALNUM = "[^0-9A-Za-z]"
# a decimal float() reads exactly as Arrow's cast does (both round correctly); nothing else
_DECIMAL = r"^[+-]?[0-9]{1,15}(\.[0-9]{0,15})?$"


def _text_length(fmt: str) -> int:
    """How long a text in the ISO format ``fmt`` is: each directive is written in two characters,
    the year in four."""
    return len(fmt) + 2


class _Dates:
    """One column parsed with one format: the timestamps (seconds), days, and parts on demand."""

    def __init__(self, parsed: pa.Array) -> None:
        self.parsed = parsed
        self.seconds = pc.cast(parsed, pa.int64())
        self.days = pc.cast(pc.cast(pc.cast(parsed, pa.date32()), pa.int32()), pa.int64())  # floors

    @cached_property
    def year(self) -> pa.Array:
        return pc.year(self.parsed)

    @cached_property
    def month(self) -> pa.Array:
        return pc.month(self.parsed)

    @cached_property
    def day(self) -> pa.Array:
        return pc.day(self.parsed)


@dataclass
class _Block:
    """The columns of one block and what the steps computed from them (each once)."""

    columns: Mapping[str, pa.Array]
    ok: pa.Array
    stripped: dict[str, pa.Array] = field(default_factory=dict)
    dates: dict[tuple[str, str], _Dates] = field(default_factory=dict)
    event: _Dates | None = None

    def require(self, condition: pa.Array) -> None:
        self.ok = pc.and_(self.ok, pc.fill_null(condition, False))

    def text(self, column: str) -> pa.Array:
        """The column stripped, for ASCII rows (others are marked for the row mapper)."""
        known = self.stripped.get(column)
        if known is None:
            raw = self.columns[column]
            self.require(pc.string_is_ascii(raw))
            known = self.stripped[column] = pc.utf8_trim(raw, characters=_ASCII_SPACE)
        return known

    def date(self, column: str, fmt: str) -> _Dates:
        known = self.dates.get((column, fmt))
        if known is not None:
            return known
        text = self.text(column)
        parsed = pc.strptime(text, format=fmt, unit="s", error_is_null=True)
        # The value must read back as the very text it was parsed from. That leaves only the
        # zero-padded ISO text datetime.fromisoformat reads (strptime alone also takes
        # '2024-1-5 3:04', which the row mapper reads by another path), and refuses what Arrow's
        # strptime takes and fromisoformat does not: 30 February (rolled into March), a 60th
        # second (into the next minute) and, below, year 0
        written = pc.utf8_replace_slice(text, 10, 11, " ") if "T" in fmt else text
        canonical = pc.utf8_slice_codeunits(pc.cast(parsed, pa.string()), 0, _text_length(fmt))
        self.require(pc.equal(canonical, written))
        self.require(pc.invert(pc.starts_with(text, "0000")))
        dates = self.dates[(column, fmt)] = _Dates(parsed)
        return dates


Step = Callable[[_Block], "list[Any]"]


def _codes_of(values: pa.Array, lookup: Callable[[str], int | None]) -> pa.Array:
    """``lookup`` of each value, computed once per distinct value; null where it gives None."""
    encoded = pc.dictionary_encode(values)
    table = pa.array([lookup(v) for v in encoded.dictionary.to_pylist()], pa.int64())
    return pc.take(table, encoded.indices)


def _listed(values: pa.Array) -> list[Any]:
    """The values as a Python list: what the batch's protobuf columns are built from."""
    listed: list[Any] = values.to_pylist()
    return listed


def _clamped(values: pa.Array, low: float, high: float) -> pa.Array:
    return pc.if_else(pc.less(values, low), low, pc.if_else(pc.greater(values, high), high, values))


class ColumnarMapper:
    """Maps a block's columns; see the module docstring. Built by agents._mapping.build_mapper."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self._steps = tuple(steps)

    def map_block(self, columns: Mapping[str, pa.Array]) -> tuple[list[bool], list[list[Any]]]:
        """(row fits, the batch columns of every row): a row that does not fit holds
        placeholders and must go through the row mapper."""
        rows = len(next(iter(columns.values())))
        block = _Block(columns, pa.array([True] * rows, pa.bool_()))
        out = [step(block) for step in self._steps]
        return block.ok.to_pylist(), out


class ColumnarBuilder:
    """Collects the steps in the row mapper's order: subject, event day, dimensions, measures."""

    def __init__(self) -> None:
        self.steps: list[Step] = []

    def subject(self, spec: PseudonymiseField, keyed: Any, separator: bytes) -> None:
        columns = tuple(spec.columns)

        def step(block: _Block) -> list[Any]:
            parts = []
            for column in columns:
                part = block.text(column)
                # ids mostly carry dashes and spaces: literal replaces cost a third of the pattern's
                for separator_char in ("-", " "):
                    part = pc.replace_substring(part, separator_char, "")
                if not pc.all(pc.ascii_is_alnum(part)).as_py():
                    part = pc.replace_substring_regex(part, _NOT_ALNUM, "")
                part = pc.ascii_upper(part)
                block.require(pc.greater(pc.binary_length(part), 0))
                parts.append(part)
            joined = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, separator.decode())
            encoded = pc.dictionary_encode(joined)
            copy = keyed.copy
            tokens = []
            for text in encoded.dictionary.to_pylist():
                mac = copy()
                mac.update(text.encode())
                tokens.append(mac.digest())
            return list(map(tokens.__getitem__, encoded.indices.to_pylist()))

        self.steps.append(step)

    def event_day(self, spec: DateField, granularity: str, first_year: int, last_year: int) -> None:
        column, fmt = spec.column, spec.format

        def step(block: _Block) -> list[Any]:
            dates = block.date(column, fmt)
            block.event = dates
            block.require(
                pc.and_(pc.greater_equal(dates.year, first_year), pc.less_equal(dates.year, last_year))
            )
            days = dates.days
            if granularity == "month":
                days = pc.subtract(days, pc.subtract(dates.day, 1))
            return _listed(days)

        self.steps.append(step)

    def coded(self, column: str, codes: Mapping[str, int], *, upper: bool) -> None:
        """A dimension read through a table of codes (a map, or a lookup file when ``upper``)."""

        def coded_step(block: _Block) -> list[Any]:
            text = block.text(column)
            found = _codes_of(pc.ascii_upper(text) if upper else text, codes.get)
            block.require(pc.is_valid(found))
            return _listed(found)

        self.steps.append(coded_step)

    def age_band(self, column: str, fmt: str, by_age: Sequence[int | None]) -> None:
        bands = pa.array(list(by_age), pa.int64())

        def age_step(block: _Block) -> list[Any]:
            event = block.event
            assert event is not None
            born = block.date(column, fmt)
            before_birthday = pc.or_(
                pc.less(event.month, born.month),
                pc.and_(pc.equal(event.month, born.month), pc.less(event.day, born.day)),
            )
            age = pc.subtract(pc.subtract(event.year, born.year), pc.cast(before_birthday, pa.int64()))
            fits = pc.and_(pc.greater_equal(age, 0), pc.less(age, len(bands)))
            block.require(fits)
            found = pc.take(bands, pc.if_else(fits, age, 0))
            block.require(pc.is_valid(found))
            return _listed(found)

        self.steps.append(age_step)

    def number(self, column: str, low: float, high: float) -> None:
        def number_step(block: _Block) -> list[Any]:
            text = block.text(column)
            fits = pc.match_substring_regex(text, _DECIMAL)
            block.require(fits)
            values = pc.cast(pc.if_else(fits, text, "0"), pa.float64())
            return _listed(_clamped(values, low, high))

        self.steps.append(number_step)

    def hours_between(self, spec: HoursBetweenField, low: float, high: float) -> None:
        start_column, end_column, fmt = spec.start_column, spec.end_column, spec.format

        def hours_step(block: _Block) -> list[Any]:
            start = block.date(start_column, fmt)
            end = block.date(end_column, fmt)
            hours = pc.divide(pc.cast(pc.subtract(end.seconds, start.seconds), pa.float64()), 3600.0)
            return _listed(_clamped(hours, low, high))

        self.steps.append(hours_step)

    def build(self) -> ColumnarMapper:
        return ColumnarMapper(self.steps)


def rows_of(columns: Mapping[str, pa.Array], indexes: Sequence[int]) -> list[dict[str, str]]:
    """The rows at ``indexes`` as the row mapper reads them."""
    picked = {
        name: pc.take(values, pa.array(indexes, pa.int64())).to_pylist() for name, values in columns.items()
    }
    names = list(picked)
    return [dict(zip(names, values, strict=True)) for values in zip(*picked.values(), strict=True)]
