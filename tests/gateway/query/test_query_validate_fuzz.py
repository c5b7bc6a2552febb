"""Fuzzing validate_request with whole hostile AggregateRequests: random and catalogue-like names,
unknown enum numbers, huge repeated fields, long, odd and NUL-holding unicode strings. Every one
either validates into a spec that keeps the catalogue's limits, or raises InvalidRequest naming a
field that exists in the request, in one of the validator's fixed sentences; nothing else."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import pytest
from fuzz_strategies import fuzz_text, huge_or_small, varint
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway._pb import query_pb2
from gateway.catalogue import TIME_DIMENSIONS, Catalogue
from gateway.errors import InvalidRequest
from gateway.query import MAX_GROUP_BY, MAX_LINK_DAYS, MAX_MONTHS, validate_request

pytestmark = pytest.mark.fuzz
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

# The validator's sentences, numbers written N: a message outside this set is a new sentence to
# review (could it carry a submitted value?) before it is added here.
PROBLEMS = {
    "is required",
    "at least one measure is required",
    "is required when grouping by month, quarter or year",
    "may be at most N",
    "may hold at most N entries",
    "may span at most N months",
    "must be N to N printable ASCII characters",
    "must be SUBJECTS, RECORDS, SUM or MEAN",
    "must be a month written YYYY-MM, from N to N",
    "must be a value of the dimension's domain",
    "must be empty for SUBJECTS and RECORDS",
    "must differ from the queried dataset",
    "must hold at least one value",
    "must name a dataset in the catalogue",
    "must name a dimension of the dataset",
    "must name a dimension of the dataset, or month, quarter or year",
    "must name a measure of the dataset for SUM and MEAN",
    "must not come before months.first",
    "only one of month, quarter and year may be grouped by",
    "repeats an earlier entry",
    "repeats an earlier filter's dimension",
    "repeats an earlier measure",
    "repeats an earlier value",
    "time is limited with months, not with a filter",
}
_STEP = re.compile(r"([a-z_]+)(?:\[(\d+)\])?")


def _resolve(request: query_pb2.AggregateRequest, path: str) -> object:
    """The part of ``request`` a field path names; fails the test if the path names nothing."""
    target: Any = request
    for step in path.split("."):
        match = _STEP.fullmatch(step)
        assert match is not None, f"field path {path!r} is not a path"
        target = getattr(target, match.group(1))
        if match.group(2) is not None:
            assert int(match.group(2)) < len(target), f"field path {path!r} indexes past the request"
            target = target[int(match.group(2))]
    return target


def _check_spec_keeps_the_limits(catalogue: Catalogue, request: query_pb2.AggregateRequest) -> None:
    spec = validate_request(request, catalogue)
    dataset = catalogue.datasets[spec.dataset]
    assert spec.dataset == request.dataset
    assert len(spec.measures) == len(request.measures) >= 1
    assert len(spec.group_by) <= MAX_GROUP_BY
    assert all(g in TIME_DIMENSIONS or dataset.dimension(g) is not None for g in spec.group_by)
    for dimension, values in spec.filters:
        domain = dataset.dimension(dimension).domain  # type: ignore[union-attr]
        assert values and set(values) <= set(domain)
    if spec.months is not None:
        first, last = (int(m[:4]) * 12 + int(m[5:]) for m in spec.months)
        assert 0 <= last - first < MAX_MONTHS
    if spec.link is not None:
        assert spec.link.dataset != spec.dataset
        assert max(spec.link.days_before, spec.link.days_after) <= MAX_LINK_DAYS


def _judge(catalogue: Catalogue, request: query_pb2.AggregateRequest) -> None:
    try:
        _check_spec_keeps_the_limits(catalogue, request)
    except InvalidRequest as caught:
        error = caught
    else:
        event("valid")  # --hypothesis-show-statistics: how deep the examples reach
        return
    event(re.sub(r"[0-9]+", "N", error.field))
    _resolve(request, error.field)
    prefix = f"{error.field}: "
    assert error.message.startswith(prefix)
    assert re.sub(r"[0-9]+", "N", error.message[len(prefix) :]) in PROBLEMS, error.message


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(request=REQUESTS)
def test_any_request_validates_or_names_a_field_in_a_fixed_sentence(
    catalogue: Catalogue, request: query_pb2.AggregateRequest
) -> None:
    """A random request gives a spec within every limit, or InvalidRequest naming a field it has."""
    _judge(catalogue, request)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(request=REQUESTS, data=st.data())
def test_a_request_rebuilt_from_its_own_bytes_is_judged_the_same(
    catalogue: Catalogue, request: query_pb2.AggregateRequest, data: st.DataObject
) -> None:
    """The bytes of a request with unknown fields appended parse and are judged like the request."""
    extra = data.draw(st.binary(max_size=64).map(_as_unknown_field))
    parsed = query_pb2.AggregateRequest.FromString(request.SerializeToString() + extra)
    assert _outcome(catalogue, parsed) == _outcome(catalogue, request)


def _as_unknown_field(payload: bytes) -> bytes:
    """``payload`` as length-delimited field 15, which AggregateRequest does not define."""
    return bytes([15 << 3 | 2]) + varint(len(payload)) + payload


def _outcome(catalogue: Catalogue, request: query_pb2.AggregateRequest) -> str:
    try:
        return repr(validate_request(request, catalogue))
    except InvalidRequest as error:
        return error.message
