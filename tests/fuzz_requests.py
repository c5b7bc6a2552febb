"""Hypothesis strategies for whole hostile AggregateRequests, shared by the validator's fuzzer
and the gRPC one: names from the test catalogues (tests/gateway/conftest.py and the demo's agree
on these) four times in five, so examples reach the deep checks, else near misses and junk;
unknown enum numbers; huge repeated fields."""

from __future__ import annotations

from typing import TypeVar

from fuzz_strategies import fuzz_text, huge_or_small
from hypothesis import strategies as st

from gateway._pb import query_pb2
from gateway.query import MAX_LINK_DAYS

T = TypeVar("T")

_JUNK = fuzz_text()
_NEAR_MISSES = st.sampled_from(["ED_VISITS", "district ", "D01\x00", "", "2024-13", "0000-00", "month\n"])


def _often(good: st.SearchStrategy[T], bad: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """``good`` four times in five (so examples reach the deeper checks), else ``bad``."""
    # not one_of(good, good, ...): hypothesis flattens and dedups one_of's branches
    return st.builds(lambda pick, g, b: b if pick == 0 else g, st.integers(0, 4), good, bad)


def _mostly(*names: str) -> st.SearchStrategy[str]:
    """A name the validator knows, else a near miss or hostile text."""
    return _often(st.sampled_from(names), _NEAR_MISSES | _JUNK)


_DIMENSIONS = ("district", "age_band", "sex", "presentation", "incident_type")
_VALUES = ("D01", "D02", "D03", "0-17", "18-64", "65+", "F", "M", "X", "overdose", "injury", "other",
           "assault", "drugs")  # fmt: skip
_DATASET = _mostly("ed_visits")
_MONTH = _mostly("2024-01", "2025-12") | st.builds(
    "{:04d}-{:02d}".format, st.integers(1890, 3010), st.integers(0, 13)
)
_KINDS = _often(st.integers(1, 4), st.integers(0, 5) | st.integers(-(2**31), 2**31 - 1))
_UINT32 = st.one_of(st.integers(0, MAX_LINK_DAYS + 2), st.integers(0, 2**32 - 1))
_SMALL_FILTER = st.builds(
    query_pb2.ValueFilter,
    dimension=_mostly(*_DIMENSIONS, "month"),
    values=st.lists(_mostly(*_VALUES), max_size=4, unique=True),
)
# thousands of filters, or one filter with thousands of values; never both (that is gigabytes)
_FILTERS = _often(
    st.lists(_SMALL_FILTER, max_size=3, unique_by=lambda f: f.dimension),
    huge_or_small(_SMALL_FILTER) |
    st.builds(lambda f, rest: [f, *rest],
              st.builds(query_pb2.ValueFilter, dimension=_mostly(*_DIMENSIONS), values=huge_or_small(_mostly(*_VALUES))),
              st.lists(_SMALL_FILTER, max_size=2)),
)  # fmt: skip
_GOOD_MEASURES = [
    (1, ""),
    (2, ""),
    (3, "cost"),
    (4, "cost"),
    (3, "length_of_stay_hours"),
    (4, "length_of_stay_hours"),
]
_MEASURE = st.builds(
    lambda kind_field: query_pb2.MeasureSpec(kind=kind_field[0], field=kind_field[1]),
    _often(st.sampled_from(_GOOD_MEASURES), st.tuples(_KINDS, _mostly("", "cost", "length_of_stay_hours"))),
)
_LINK = st.builds(
    query_pb2.Link,
    dataset=_mostly("police_incidents", "ed_visits"),
    days_before=_UINT32,
    days_after=_UINT32,
    filters=_FILTERS,
)
REQUESTS = st.builds(
    query_pb2.AggregateRequest,
    agreement_id=_mostly("ag-2026-001"),
    purpose=_mostly("overdose-prevention"),
    dataset=_DATASET,
    measures=_often(st.lists(_MEASURE, min_size=1, max_size=3, unique_by=str), huge_or_small(_MEASURE)),
    group_by=_often(
        st.lists(_mostly(*_DIMENSIONS, "month", "quarter", "year"), max_size=3, unique=True),
        huge_or_small(_mostly(*_DIMENSIONS, "month")),
    ),
    filters=_FILTERS,
    months=st.none() | st.builds(query_pb2.MonthRange, first=_MONTH, last=_MONTH),
    link=st.none() | _LINK,
)
