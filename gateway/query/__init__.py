"""Aggregate queries: the validated query model and its raw, pre-disclosure result."""

from gateway.query._spec import Filters, LinkSpec, MeasureKind, MeasureRef, QuerySpec, RawCell, RawResult

__all__ = ["Filters", "LinkSpec", "MeasureKind", "MeasureRef", "QuerySpec", "RawCell", "RawResult"]
