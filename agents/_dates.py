"""Date parsing for the mapper: strptime semantics, with a fast path for plain numeric formats.

``datetime.strptime`` costs ~5 µs a call and a record may hold three dates, which would make
date parsing the agent's main cost. Formats built only from %Y %m %d %H %M %S and literal
characters are compiled to one regular expression instead (~1.5 µs); zero-padded ISO text under
an ISO format goes straight to ``datetime.fromisoformat`` (~0.3 µs); any other format falls back
to strptime itself, so behaviour stays strptime's. The same text parsed twice in a row (one
column feeding two fields) is answered from a one-entry memo.
"""

from __future__ import annotations

import re
from datetime import date, datetime

EPOCH = date(1970, 1, 1)
_FAST = {
    "Y": r"(\d{4})",
    "m": r"(\d{1,2})",
    "d": r"(\d{1,2})",
    "H": r"(\d{1,2})",
    "M": r"(\d{1,2})",
    "S": r"(\d{1,2})",
}
_DIRECTIVE = re.compile(r"%(.)|(\s+)|([^%\s]+)")
_ISO_DAY = "[0-9]{4}-[0-9]{2}-[0-9]{2}"
ISO_PATTERNS = {
    "%Y-%m-%d": re.compile(_ISO_DAY),
    "%Y-%m-%d %H:%M": re.compile(_ISO_DAY + " [0-9]{2}:[0-9]{2}"),
    "%Y-%m-%d %H:%M:%S": re.compile(_ISO_DAY + " [0-9]{2}:[0-9]{2}:[0-9]{2}"),
    "%Y-%m-%dT%H:%M": re.compile(_ISO_DAY + "T[0-9]{2}:[0-9]{2}"),
    "%Y-%m-%dT%H:%M:%S": re.compile(_ISO_DAY + "T[0-9]{2}:[0-9]{2}:[0-9]{2}"),
}


class DateParser:
    """Parse text with one strptime format; raises ValueError when the text does not fit."""

    def __init__(self, fmt: str) -> None:
        self.format = fmt
        # the ISO fast path's pattern, or None; the mapper inlines that path (agents/_mapping.py)
        self.iso_pattern = ISO_PATTERNS.get(fmt)
        self._last: tuple[str, datetime] | None = None
        self._pattern, order = _compile(fmt)
        # positions in [*parsed groups, 1, 0] of year, month, day, hour, minute, second
        one, zero = len(order), len(order) + 1
        self._slots = tuple(
            order.index(part) if part in order else default
            for part, default in (("Y", one), ("m", one), ("d", one), ("H", zero), ("M", zero), ("S", zero))
        )

    def parse(self, text: str) -> datetime:
        last = self._last
        if last is not None and last[0] == text:
            return last[1]
        value = self._parse(text)
        self._last = (text, value)
        return value

    def _parse(self, text: str) -> datetime:
        if self.iso_pattern is not None and self.iso_pattern.fullmatch(text):
            return datetime.fromisoformat(text)
        if self._pattern is None:
            return datetime.strptime(text, self.format)
        match = self._pattern.fullmatch(text)
        if match is None:
            raise ValueError("text does not match the format")
        values = [*map(int, match.groups()), 1, 0]
        year, month, day, hour, minute, second = self._slots
        return datetime(
            values[year], values[month], values[day], values[hour], values[minute], values[second]
        )


def _compile(fmt: str) -> tuple[re.Pattern[str] | None, tuple[str, ...]]:
    """A regular expression for a plain numeric format, or None to let strptime handle it."""
    pieces: list[str] = []
    order: list[str] = []
    consumed = 0
    for match in _DIRECTIVE.finditer(fmt):
        if match.start() != consumed:  # a lone '%' the tokenizer skipped
            return None, ()
        consumed = match.end()
        directive, space, literal = match.groups()
        if directive == "%":
            pieces.append("%")
        elif directive is not None:
            if directive not in _FAST or directive in order:
                return None, ()
            pieces.append(_FAST[directive])
            order.append(directive)
        elif space is not None:
            pieces.append(r"\s+")
        else:
            pieces.append(re.escape(literal))
    if consumed != len(fmt) or "Y" not in order:
        return None, ()
    return re.compile("".join(pieces)), tuple(order)


def days_since_epoch(day: date) -> int:
    return (day - EPOCH).days


def coarsen(day: date, granularity: str) -> int:
    """Days since 1970-01-01 of the day itself, or of the first of its month."""
    if granularity == "month":
        return days_since_epoch(day.replace(day=1))
    return days_since_epoch(day)


def age_in_years(birth: date, on: date) -> int:
    """Whole years completed on `on`: a birthday on the day itself counts."""
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
