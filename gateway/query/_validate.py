"""Checking an ``AggregateRequest`` against the catalogue, and the documents derived from it.

``validate_request`` turns the wire request into a canonical ``QuerySpec`` or raises
``InvalidRequest`` naming the field path at fault. Messages say what is expected and never
repeat what was submitted: a value typed into a request may itself be sensitive, and echoing it
would make every error message a channel.

``policy_request`` is the shape of the question the policy engine judges (names only);
``fingerprint_document`` and ``query_fingerprint`` identify the whole question, filter values
included, so the same question worded differently is recognised as the same.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from gateway._pb import query_pb2
from gateway.catalogue import TIME_DIMENSIONS, Catalogue, Dataset
from gateway.errors import InvalidRequest
from gateway.query._spec import Filters, LinkSpec, MeasureKind, MeasureRef, QuerySpec

MAX_GROUP_BY = 3
"""The hard ceiling on grouping entries; an agreement may lower it, never raise it."""
MAX_MONTHS = 120
MAX_LINK_DAYS = 366
MAX_TEXT = 64

_KINDS: dict[int, MeasureKind] = {
    query_pb2.MEASURE_KIND_SUBJECTS: "subjects",
    query_pb2.MEASURE_KIND_RECORDS: "records",
    query_pb2.MEASURE_KIND_SUM: "sum",
    query_pb2.MEASURE_KIND_MEAN: "mean",
}
# Printable ASCII, no leading or trailing blank: agreement ids and purposes are identifiers
# that appear in audit entries, so nothing that could forge a log line or hide a character.
_TEXT = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")
_FIRST_YEAR, _LAST_YEAR = 1900, 2999
_FINGERPRINT_DOMAIN = b"datashare.query-fingerprint.v1\0"


def validate_request(req: query_pb2.AggregateRequest, catalogue: Catalogue) -> QuerySpec:
    """The canonical spec of ``req``; InvalidRequest names the first field at fault."""
    check_text("agreement_id", req.agreement_id)
    check_text("purpose", req.purpose)
    dataset = catalogue.dataset(req.dataset)
    if dataset is None:
        raise InvalidRequest("dataset", "must name a dataset in the catalogue")
    measures = _measures(req.measures, dataset)
    group_by = _group_by(req.group_by, dataset)
    filters = _filters("filters", req.filters, dataset)
    months = _months(req.months) if req.HasField("months") else None
    if months is None and any(g in TIME_DIMENSIONS for g in group_by):
        # Without a range the time axis would be whatever months hold data, so the shape of
        # the answer would say which months are empty.
        raise InvalidRequest("months", "is required when grouping by month, quarter or year")
    link = _link(req.link, dataset, catalogue) if req.HasField("link") else None
    return QuerySpec(
        dataset=dataset.name,
        measures=measures,
        group_by=group_by,
        filters=filters,
        months=months,
        link=link,
    )


def policy_request(spec: QuerySpec, agreement_id: str, purpose: str) -> dict[str, Any]:
    """The ``request`` part of the policy input: the shape of the question, names only."""
    link = None
    if spec.link is not None:
        link = {
            "dataset": spec.link.dataset,
            "days_before": spec.link.days_before,
            "days_after": spec.link.days_after,
            "filters": [dimension for dimension, _ in spec.link.filters],
        }
    return {
        "agreement_id": agreement_id,
        "purpose": purpose,
        "dataset": spec.dataset,
        "measures": [m.label for m in spec.measures],
        "group_by": list(spec.group_by),
        "filters": [dimension for dimension, _ in spec.filters],
        "months": _months_doc(spec.months),
        "link": link,
    }


def fingerprint_document(spec: QuerySpec) -> dict[str, Any]:
    """The whole question, filter values included, in a canonical form (for the audit log)."""
    link = None
    if spec.link is not None:
        link = {
            "dataset": spec.link.dataset,
            "days_before": spec.link.days_before,
            "days_after": spec.link.days_after,
            "filters": _filters_doc(spec.link.filters),
        }
    return {
        "dataset": spec.dataset,
        "measures": [m.label for m in spec.measures],
        "group_by": list(spec.group_by),
        "filters": _filters_doc(spec.filters),
        "months": _months_doc(spec.months),
        "link": link,
    }


def query_fingerprint(spec: QuerySpec) -> str:
    """SHA-256 hex of the canonical JSON of ``fingerprint_document(spec)``."""
    canonical = json.dumps(
        fingerprint_document(spec), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode("ascii")
    return hashlib.sha256(_FINGERPRINT_DOMAIN + canonical).hexdigest()


def check_text(field: str, value: str, max_length: int = MAX_TEXT) -> None:
    """Refuse, naming ``field``, anything but 1 to ``max_length`` printable ASCII characters with
    no blank at either end: every name a caller sends that the gateway logs or looks up (a NUL
    would fail the audit write on PostgreSQL; a line break would forge a line in a reason)."""
    if not value:
        raise InvalidRequest(field, "is required")
    if len(value) > max_length or not _TEXT.fullmatch(value):
        raise InvalidRequest(field, f"must be 1 to {max_length} printable ASCII characters")


def _measures(specs: Sequence[query_pb2.MeasureSpec], dataset: Dataset) -> tuple[MeasureRef, ...]:
    if not specs:
        raise InvalidRequest("measures", "at least one measure is required")
    seen: list[MeasureRef] = []
    for i, spec in enumerate(specs):
        where = f"measures[{i}]"
        kind = _KINDS.get(spec.kind)
        if kind is None:
            raise InvalidRequest(f"{where}.kind", "must be SUBJECTS, RECORDS, SUM or MEAN")
        if kind in ("subjects", "records"):
            if spec.field:
                raise InvalidRequest(f"{where}.field", "must be empty for SUBJECTS and RECORDS")
        elif dataset.measure(spec.field) is None:
            raise InvalidRequest(f"{where}.field", "must name a measure of the dataset for SUM and MEAN")
        ref = MeasureRef(kind, spec.field)
        if ref in seen:
            raise InvalidRequest(where, "repeats an earlier measure")
        seen.append(ref)
    return tuple(seen)


def _group_by(names: Sequence[str], dataset: Dataset) -> tuple[str, ...]:
    if len(names) > MAX_GROUP_BY:
        raise InvalidRequest("group_by", f"may hold at most {MAX_GROUP_BY} entries")
    seen: list[str] = []
    for i, name in enumerate(names):
        where = f"group_by[{i}]"
        if name not in TIME_DIMENSIONS and dataset.dimension(name) is None:
            raise InvalidRequest(where, "must name a dimension of the dataset, or month, quarter or year")
        if name in seen:
            raise InvalidRequest(where, "repeats an earlier entry")
        if name in TIME_DIMENSIONS and any(g in TIME_DIMENSIONS for g in seen):
            raise InvalidRequest(where, "only one of month, quarter and year may be grouped by")
        seen.append(name)
    return tuple(seen)


def _filters(prefix: str, filters: Iterable[query_pb2.ValueFilter], dataset: Dataset) -> Filters:
    checked: dict[str, tuple[str, ...]] = {}
    for i, filt in enumerate(filters):
        where = f"{prefix}[{i}]"
        if filt.dimension in TIME_DIMENSIONS:
            raise InvalidRequest(f"{where}.dimension", "time is limited with months, not with a filter")
        dimension = dataset.dimension(filt.dimension)
        if dimension is None:
            raise InvalidRequest(f"{where}.dimension", "must name a dimension of the dataset")
        if dimension.name in checked:
            raise InvalidRequest(f"{where}.dimension", "repeats an earlier filter's dimension")
        if not filt.values:
            raise InvalidRequest(f"{where}.values", "must hold at least one value")
        values: list[str] = []
        for j, value in enumerate(filt.values):
            if value not in dimension.domain:
                raise InvalidRequest(f"{where}.values[{j}]", "must be a value of the dimension's domain")
            if value in values:
                raise InvalidRequest(f"{where}.values[{j}]", "repeats an earlier value")
            values.append(value)
        checked[dimension.name] = tuple(sorted(values))
    return tuple(sorted(checked.items()))


def _months(months: query_pb2.MonthRange) -> tuple[str, str]:
    first = _month_number("months.first", months.first)
    last = _month_number("months.last", months.last)
    if last < first:
        raise InvalidRequest("months.last", "must not come before months.first")
    if last - first + 1 > MAX_MONTHS:
        raise InvalidRequest("months", f"may span at most {MAX_MONTHS} months")
    return months.first, months.last


def _month_number(field: str, value: str) -> int:
    match = _MONTH.fullmatch(value)
    if match is None or not _FIRST_YEAR <= int(match.group(1)) <= _LAST_YEAR:
        raise InvalidRequest(field, f"must be a month written YYYY-MM, from {_FIRST_YEAR} to {_LAST_YEAR}")
    return int(match.group(1)) * 12 + int(match.group(2)) - 1


def _link(link: query_pb2.Link, dataset: Dataset, catalogue: Catalogue) -> LinkSpec:
    other = catalogue.dataset(link.dataset)
    if other is None:
        raise InvalidRequest("link.dataset", "must name a dataset in the catalogue")
    if other.name == dataset.name:
        raise InvalidRequest("link.dataset", "must differ from the queried dataset")
    if link.days_before > MAX_LINK_DAYS:
        raise InvalidRequest("link.days_before", f"may be at most {MAX_LINK_DAYS}")
    if link.days_after > MAX_LINK_DAYS:
        raise InvalidRequest("link.days_after", f"may be at most {MAX_LINK_DAYS}")
    return LinkSpec(
        dataset=other.name,
        days_before=link.days_before,
        days_after=link.days_after,
        filters=_filters("link.filters", link.filters, other),
    )


def _months_doc(months: tuple[str, str] | None) -> dict[str, str] | None:
    return None if months is None else {"first": months[0], "last": months[1]}


def _filters_doc(filters: Filters) -> dict[str, list[str]]:
    # Sorted again here so a spec built by hand (not by validate_request) fingerprints the same.
    return {dimension: sorted(values) for dimension, values in filters}
