"""The analyst's and auditor's side of the command line: building requests, showing answers."""

from __future__ import annotations

import re

import grpc

from gateway._pb import query_pb2

EXIT_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT: 4,
    grpc.StatusCode.PERMISSION_DENIED: 3,
    grpc.StatusCode.UNAUTHENTICATED: 3,
    grpc.StatusCode.UNAVAILABLE: 5,
    grpc.StatusCode.DEADLINE_EXCEEDED: 5,
}
_MEASURE_KINDS = {
    "subjects": query_pb2.MEASURE_KIND_SUBJECTS,
    "records": query_pb2.MEASURE_KIND_RECORDS,
    "sum": query_pb2.MEASURE_KIND_SUM,
    "mean": query_pb2.MEASURE_KIND_MEAN,
}
_MONTHS = re.compile(r"^(\d{4}-\d{2}):(\d{4}-\d{2})$")


class UsageError(ValueError):
    """A command-line value is malformed; the message names the option."""


def parse_measure(text: str) -> query_pb2.MeasureSpec:
    kind, _, field = text.partition(":")
    if kind not in _MEASURE_KINDS:
        raise UsageError(f"--measure {text!r}: use subjects, records, sum:FIELD or mean:FIELD")
    if (kind in ("sum", "mean")) != bool(field):
        raise UsageError(f"--measure {text!r}: sum and mean need a field (sum:FIELD); counts take none")
    return query_pb2.MeasureSpec(kind=_MEASURE_KINDS[kind], field=field)


def measure_label(spec: query_pb2.MeasureSpec) -> str:
    name = {v: k for k, v in _MEASURE_KINDS.items()}.get(spec.kind, "?")
    return f"{name}:{spec.field}" if spec.field else name


def parse_filter(text: str, option: str = "--filter") -> query_pb2.ValueFilter:
    dim, sep, values = text.partition("=")
    if not sep or not dim or not values:
        raise UsageError(f"{option} {text!r}: use DIMENSION=VALUE[,VALUE...]")
    return query_pb2.ValueFilter(dimension=dim.strip(), values=[v.strip() for v in values.split(",")])


def parse_months(text: str) -> query_pb2.MonthRange:
    match = _MONTHS.match(text)
    if match is None:
        raise UsageError(f"--months {text!r}: use FIRST:LAST as YYYY-MM:YYYY-MM")
    return query_pb2.MonthRange(first=match[1], last=match[2])


def describe_rpc_error(exc: grpc.RpcError) -> tuple[int, str]:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else ""
    words = {
        grpc.StatusCode.PERMISSION_DENIED: "refused",
        grpc.StatusCode.INVALID_ARGUMENT: "invalid request",
        grpc.StatusCode.UNAUTHENTICATED: "not authenticated",
        grpc.StatusCode.UNAVAILABLE: "gateway unavailable",
    }.get(code, "failed")
    return EXIT_CODES.get(code, 1), f"{words} ({code.name}): {details}"
