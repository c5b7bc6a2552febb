"""Fuzzing validate_request with whole hostile AggregateRequests: random and catalogue-like names,
unknown enum numbers, huge repeated fields, long, odd and NUL-holding unicode strings. Every one
either validates into a spec that keeps the catalogue's limits, or raises InvalidRequest naming a
field that exists in the request, in one of the validator's fixed sentences; nothing else."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fuzz_requests import REQUESTS
from fuzz_strategies import varint
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway._pb import query_pb2
from gateway.catalogue import TIME_DIMENSIONS, Catalogue
from gateway.errors import InvalidRequest
from gateway.query import MAX_GROUP_BY, MAX_LINK_DAYS, MAX_MONTHS, validate_request

pytestmark = pytest.mark.fuzz

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
