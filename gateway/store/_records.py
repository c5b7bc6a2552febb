"""Turning a batch's validated columns into table rows, with the last checks the store owns.

The service has already checked every value against the dataset contract; here the store makes
sure the columns line up with its table (same names, same length, 32-byte subjects) and derives
``event_month`` from ``event_day``. Errors name the field, never a value or a count.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.errors import InvalidRequest
from gateway.store._base import BatchMeta, RecordColumns
from gateway.store._schema import BATCH_ID_MAX, NAME_MAX, SUBJECT_BYTES, DatasetTable, subject_hs, subject_ns

_EPOCH = dt.date(1970, 1, 1)
# ``YYYY-MM`` by day number, shared by every batch: strftime per distinct day per batch was a
# third of the store's time. Only 1900-2199 is cached (the range the opener accepts), so the cache
# stays under ~110k entries whatever callers send.
_MONTHS: dict[int, str] = {}
_CACHE_FIRST_DAY, _CACHE_LAST_DAY = -25567, 84005


def check_meta(meta: BatchMeta) -> None:
    if not meta.batch_id or len(meta.batch_id) > BATCH_ID_MAX:
        raise InvalidRequest("batch_id", f"must be 1 to {BATCH_ID_MAX} characters")
    if not meta.agency or len(meta.agency) > NAME_MAX:
        raise InvalidRequest("agency", f"must be 1 to {NAME_MAX} characters")
    if len(meta.content_digest) != 64:
        raise InvalidRequest("content_digest", "must be a SHA-256 hex digest")


@dataclass(frozen=True)
class Rows:
    """A batch as table rows: column names, and one tuple per record in that order."""

    names: tuple[str, ...]
    values: list[tuple[Any, ...]]


def rows_for(meta: BatchMeta, records: RecordColumns, target: DatasetTable) -> Rows:
    """The records as row tuples for a bulk insert, after the checks only the store can make."""
    n = len(records.subjects)
    _same_names("records.dimensions", records.dimensions, target.dimension_names)
    _same_names("records.measures", records.measures, target.measure_names)
    _same_length("records.event_days", records.event_days, n)
    for name in target.dimension_names:
        _same_length(f"records.dimensions.{name}", records.dimensions[name], n)
    for name in target.measure_names:
        _same_length(f"records.measures.{name}", records.measures[name], n)
    if meta.record_count != n:
        raise InvalidRequest("record_count", "does not match the number of records")
    # set(map(...)) runs in C: these checks are per record, so a Python loop would cost more
    # than the insert itself
    subjects = records.subjects
    if not (set(map(type, subjects)) <= {bytes} and set(map(len, subjects)) <= {SUBJECT_BYTES}):
        raise InvalidRequest("records.subjects", f"every subject must be {SUBJECT_BYTES} bytes")
    months = _months(records.event_days)
    names = (
        "batch_id",
        "subject",
        "subject_h",
        "subject_n",
        "event_day",
        "event_month",
        *target.dimension_names,
        *target.measure_names,
    )
    batch_ids = [meta.batch_id] * n
    columns: list[Sequence[Any]] = [
        batch_ids,
        records.subjects,
        subject_hs(subjects, SUBJECT_BYTES),  # every subject is SUBJECT_BYTES long, checked above
        subject_ns(subjects, SUBJECT_BYTES),
        records.event_days,
        months,
        *(records.dimensions[d] for d in target.dimension_names),
        *(records.measures[m] for m in target.measure_names),
    ]
    return Rows(names, list(zip(*columns, strict=True)))


def month_of(day: int) -> str:
    """``YYYY-MM`` of a day number (days since 1970-01-01)."""
    return (_EPOCH + dt.timedelta(days=day)).strftime("%Y-%m")


def _months(days: Sequence[int]) -> list[str]:
    # type, not isinstance: bool and float would slip past a lookup keyed on equality
    if not set(map(type, days)) <= {int}:
        raise InvalidRequest("records.event_days", "every event day must be a whole number")
    known = _MONTHS.get
    by_day = {day: known(day) or _month_uncached(day) for day in set(days)}
    return list(map(by_day.__getitem__, days))


def _month_uncached(day: int) -> str:
    try:
        month = month_of(day)
    except (OverflowError, ValueError) as exc:
        raise InvalidRequest("records.event_days", "an event day is out of range") from exc
    if _CACHE_FIRST_DAY <= day <= _CACHE_LAST_DAY:
        _MONTHS[day] = month
    return month


def _same_names(field: str, given: Iterable[str], expected: tuple[str, ...]) -> None:
    given_set, expected_set = set(given), set(expected)
    missing = sorted(expected_set - given_set)
    if missing:
        raise InvalidRequest(f"{field}.{missing[0]}", "column is missing")
    extra = sorted(given_set - expected_set)
    if extra:
        raise InvalidRequest(f"{field}.{extra[0]}", "column is not in the dataset contract")


def _same_length(field: str, column: Sequence[Any], n: int) -> None:
    if len(column) != n:
        raise InvalidRequest(field, "has a different length from records.subjects")
