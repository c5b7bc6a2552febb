"""A validated aggregate query and its raw answer: the types shared by validation, the store and
disclosure control. Everything here is already checked against the catalogue and the policy's
obligations; nothing here has passed disclosure control yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

MeasureKind = Literal["subjects", "records", "sum", "mean"]
Filters = tuple[tuple[str, tuple[str, ...]], ...]
"""(dimension, allowed values) pairs, sorted by dimension, values sorted: a canonical form."""


@dataclass(frozen=True)
class MeasureRef:
    kind: MeasureKind
    field: str = ""  # the measure column, for sum and mean only

    @property
    def label(self) -> str:
        """The name agreements use: ``subjects``, ``records``, ``sum:<field>``, ``mean:<field>``."""
        return f"{self.kind}:{self.field}" if self.field else self.kind


@dataclass(frozen=True)
class LinkSpec:
    """Keep subjects who also appear in ``dataset`` from ``days_before`` days before the event to
    ``days_after`` days after it, among that dataset's records that pass ``filters``."""

    dataset: str
    days_before: int
    days_after: int
    filters: Filters = ()


@dataclass(frozen=True)
class QuerySpec:
    dataset: str
    measures: tuple[MeasureRef, ...]
    group_by: tuple[str, ...]  # dimension names, or "month" / "quarter" / "year"
    filters: Filters = ()
    months: tuple[str, str] | None = None  # inclusive ("YYYY-MM", "YYYY-MM")
    link: LinkSpec | None = None

    @property
    def sum_fields(self) -> tuple[str, ...]:
        """Measure columns whose per-cell sum the store must compute (for sum and mean)."""
        return tuple(dict.fromkeys(m.field for m in self.measures if m.kind in ("sum", "mean")))


@dataclass(frozen=True)
class RawCell:
    """One group's true figures, straight from the database; never leaves the gateway as is.

    Time keys read ``2024-03`` (month), ``2024-Q1`` (quarter) and ``2024`` (year)."""

    key: tuple[str, ...]
    subjects: int  # distinct subjects
    records: int
    sums: Mapping[str, float] = field(default_factory=dict)
    # per sum field: the sum of the n largest per-subject contributions (the dominance rule's n),
    # when the store was asked for them
    tops: Mapping[str, float] = field(default_factory=dict)
    # a digest of the cell's people (SUM(DISTINCT subject_h)) when the store was asked for one:
    # the same people give the same digest however the request was worded (noise key, §9.6)
    people: int = 0


@dataclass(frozen=True)
class RawResult:
    cells: tuple[RawCell, ...]  # only groups that hold at least one record
    total: RawCell  # the whole filtered table, key ()
    data_version: int = 0  # the dataset's number of stored batches, when asked for (noise key)
    # the newest batch stamp the answer's snapshot saw: every batch it did not read is stamped
    # later (gateway/store/_watermark.py). "" (nothing read) takes all data as new: the safe side
    watermark: str = ""
