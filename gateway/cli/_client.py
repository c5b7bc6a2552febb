"""The analyst's and auditor's side of the command line: building requests, showing answers."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from typing import Any

import grpc
from rich.console import Console
from rich.table import Table

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


def result_rows(result: query_pb2.AggregateResult) -> tuple[list[str], list[list[Any]]]:
    """Header and rows, the total last; a withheld value is None (never zero)."""
    header = [*result.group_by, *(measure_label(m) for m in result.measures)]
    rows: list[list[Any]] = []
    for cell in [*result.cells, result.total]:
        key = (
            list(cell.key)
            if cell.key
            else (["TOTAL", *[""] * (len(result.group_by) - 1)] if result.group_by else [])
        )
        rows.append([*key, *(None if v.withheld else _number(v.value) for v in cell.values)])
    return header, rows


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 1)


def result_json(result: query_pb2.AggregateResult) -> str:
    header, rows = result_rows(result)
    d = result.disclosure
    doc = {
        "group_by": list(result.group_by),
        "measures": [measure_label(m) for m in result.measures],
        "cells": [dict(zip(header, row, strict=True)) for row in rows[:-1]],
        "total": dict(zip(header, rows[-1], strict=True)),
        "disclosure": {
            "k": d.k,
            "round_to": d.round_to,
            "cells_withheld": d.cells_withheld,
            "decision_id": d.decision_id,
            "policy_revision": d.policy_revision,
            "agreement_id": d.agreement_id,
        },
    }
    return json.dumps(doc, indent=2)


def result_csv(result: query_pb2.AggregateResult) -> str:
    header, rows = result_rows(result)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["withheld" if v is None else v for v in row] for row in rows])
    return buf.getvalue()


def print_result(console: Console, result: query_pb2.AggregateResult, title: str = "") -> None:
    header, rows = result_rows(result)
    table = Table(title=title or None, show_lines=False, header_style="bold")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i < len(result.group_by) else "right")
    for i, row in enumerate(rows):
        if i == len(rows) - 1 and len(rows) > 1:
            table.add_section()
        table.add_row(*("[dim]withheld[/dim]" if v is None else str(v) for v in row))
    console.print(table)
    d = result.disclosure
    console.print(
        f"[dim]k = {d.k} distinct people; counts and sums rounded to the nearest {d.round_to}; "
        f"{d.cells_withheld} cell(s) withheld (too few people, or to protect another withheld cell). "
        f"Agreement {d.agreement_id}, decision {d.decision_id}, policy {d.policy_revision}.[/dim]"
    )


def print_datasets(console: Console, datasets: Sequence[query_pb2.QueryableDataset]) -> None:
    """One block per (agreement, dataset): readable at 80 columns, unlike a wide table."""
    if not datasets:
        console.print("No agreement lets you query any dataset.")
        return
    for d in datasets:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("agreement", f"{d.agreement_id}: {d.agreement_title}")
        table.add_row("purposes", ", ".join(d.purposes))
        table.add_row(
            "dataset",
            f"{d.contract.dataset} (owner {d.contract.owner_agency}, contract v{d.contract.version})",
        )
        table.add_row("group by", ", ".join(d.allowed_dimensions) + f"  (at most {d.max_group_by})")
        table.add_row("measures", ", ".join(d.allowed_measures))
        table.add_row("disclosure", f"k = {d.k} people, rounded to {d.round_to}, at most {d.max_cells} cells")
        console.print(table)
        console.print()
