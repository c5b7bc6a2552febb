"""Aggregate queries: the validated query model and its raw, pre-disclosure result."""

from gateway.query._spec import Filters, LinkSpec, MeasureKind, MeasureRef, QuerySpec, RawCell, RawResult
from gateway.query._validate import (
    MAX_GROUP_BY,
    MAX_LINK_DAYS,
    MAX_MONTHS,
    check_text,
    fingerprint_document,
    policy_request,
    query_fingerprint,
    validate_request,
)

__all__ = ["Filters", "LinkSpec", "MeasureKind", "MeasureRef", "QuerySpec", "RawCell", "RawResult"]

__all__ += [
    "MAX_GROUP_BY",
    "MAX_LINK_DAYS",
    "MAX_MONTHS",
    "check_text",
    "fingerprint_document",
    "policy_request",
    "query_fingerprint",
    "validate_request",
]
