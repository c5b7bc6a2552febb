"""policy_request, fingerprint_document and query_fingerprint over validated specs."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway._pb import query_pb2
from gateway.catalogue import Catalogue
from gateway.query import (
    MeasureRef,
    QuerySpec,
    fingerprint_document,
    policy_request,
    query_fingerprint,
    validate_request,
)

DISTRICTS = ["D01", "D02", "D03"]
SEXES = ["F", "M", "X"]
INCIDENTS = ["assault", "drugs", "other"]


def request(
    districts: list[str] = DISTRICTS[:2],
    sexes: list[str] = SEXES[:1],
    incidents: list[str] = INCIDENTS[1:],
    *,
    sex_first: bool = False,
    days_before: int = 30,
    last_month: str = "2025-02",
) -> query_pb2.AggregateRequest:
    filters = [
        query_pb2.ValueFilter(dimension="district", values=districts),
        query_pb2.ValueFilter(dimension="sex", values=sexes),
    ]
    if sex_first:
        filters.reverse()
    return query_pb2.AggregateRequest(
        agreement_id="ag-2026-001",
        purpose="overdose-prevention",
        dataset="ed_visits",
        measures=[
            query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_RECORDS),
            query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUM, field="cost"),
        ],
        group_by=["quarter", "district"],
        filters=filters,
        months=query_pb2.MonthRange(first="2024-11", last=last_month),
        link=query_pb2.Link(
            dataset="police_incidents",
            days_before=days_before,
            filters=[query_pb2.ValueFilter(dimension="incident_type", values=incidents)],
        ),
    )


def _strings(doc: Any) -> set[str]:
    if isinstance(doc, dict):
        return set(doc) | {s for v in doc.values() for s in _strings(v)}
    if isinstance(doc, list):
        return {s for v in doc for s in _strings(v)}
    return {doc} if isinstance(doc, str) else set()


def test_policy_request_names_the_shape(catalogue: Catalogue) -> None:
    """The policy sees agreement, purpose, dataset, measure labels, grouping and filter names."""
    spec = validate_request(request(), catalogue)
    assert policy_request(spec, "ag-2026-001", "overdose-prevention") == {
        "agreement_id": "ag-2026-001",
        "purpose": "overdose-prevention",
        "dataset": "ed_visits",
        "measures": ["records", "sum:cost"],
        "group_by": ["quarter", "district"],
        "filters": ["district", "sex"],
        "months": {"first": "2024-11", "last": "2025-02"},
        "link": {
            "dataset": "police_incidents",
            "days_before": 30,
            "days_after": 0,
            "filters": ["incident_type"],
        },
    }


def test_policy_request_carries_no_filter_values(catalogue: Catalogue) -> None:
    """No filter value appears anywhere in the policy input's request document."""
    spec = validate_request(request(districts=["D02"], sexes=["X"], incidents=["other"]), catalogue)
    strings = _strings(policy_request(spec, "ag-2026-001", "overdose-prevention"))
    assert strings.isdisjoint({"D02", "X", "other"})


def test_policy_request_without_months_or_link(catalogue: Catalogue) -> None:
    """An ungrouped query without months or link has months and link set to None."""
    req = request()
    req.ClearField("months")
    req.ClearField("link")
    req.group_by[:] = []
    doc = policy_request(validate_request(req, catalogue), "ag-2026-001", "overdose-prevention")
    assert doc["months"] is None
    assert doc["link"] is None
    assert doc["group_by"] == []


def test_fingerprint_document_holds_the_values(catalogue: Catalogue) -> None:
    """The fingerprint document keeps each filter's values, sorted, for the audit log."""
    doc = fingerprint_document(validate_request(request(districts=["D03", "D01"]), catalogue))
    assert doc["filters"] == {"district": ["D01", "D03"], "sex": ["F"]}
    assert doc["link"]["filters"] == {"incident_type": ["drugs", "other"]}
    json.dumps(doc)  # a plain JSON document


def test_fingerprint_is_sha256_hex(catalogue: Catalogue) -> None:
    """The fingerprint is 64 lower-case hex characters."""
    assert re.fullmatch(r"[0-9a-f]{64}", query_fingerprint(validate_request(request(), catalogue)))


@settings(max_examples=50)
@given(
    districts=st.permutations(DISTRICTS),
    sexes=st.permutations(SEXES[:2]),
    incidents=st.permutations(INCIDENTS),
    sex_first=st.booleans(),
)
def test_rewording_keeps_the_fingerprint(
    catalogue: Catalogue, districts: list[str], sexes: list[str], incidents: list[str], sex_first: bool
) -> None:
    """Reordering value lists or filters is the same question, so the same fingerprint."""
    plain = request(DISTRICTS, SEXES[:2], INCIDENTS)
    reworded = request(districts, sexes, incidents, sex_first=sex_first)
    assert query_fingerprint(validate_request(reworded, catalogue)) == query_fingerprint(
        validate_request(plain, catalogue)
    )


def test_hand_built_spec_in_any_order_has_the_same_fingerprint() -> None:
    """A spec built without validation, values unsorted, fingerprints like its canonical form."""
    records = (MeasureRef("records"),)
    base = QuerySpec("ed_visits", records, ("district",), (("district", ("D01", "D02")),))
    shuffled = QuerySpec("ed_visits", records, ("district",), (("district", ("D02", "D01")),))
    assert query_fingerprint(base) == query_fingerprint(shuffled)


def test_every_part_of_the_question_changes_the_fingerprint(catalogue: Catalogue) -> None:
    """Filter values, link filter values, link window and month range all enter the fingerprint."""
    variants = [
        request(),
        request(districts=["D01"]),
        request(incidents=["drugs"]),
        request(days_before=31),
        request(last_month="2025-03"),
    ]
    spec = validate_request(request(), catalogue)
    assert spec.link is not None
    specs = [validate_request(v, catalogue) for v in variants] + [
        replace(spec, measures=spec.measures[:1]),
        replace(spec, group_by=spec.group_by[::-1]),
        replace(spec, link=replace(spec.link, days_after=1)),
        replace(spec, dataset="police_incidents"),
    ]
    assert len({query_fingerprint(s) for s in specs}) == len(specs)
