"""What the analyst reads: a query's answer as a table, JSON or CSV, and the listing of what may
be queried. A withheld value is shown as withheld (table), null (JSON) or an empty field (CSV),
never as zero: zero is a figure, withheld is the absence of one."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gateway._pb import common_pb2, query_pb2
from gateway.cli._client import measure_label

WITHHELD = "withheld"
TIME_GRAINS = ("month", "quarter", "year")
_MEASURE_WORDS = {"subjects": "distinct people", "records": "events; one person may have several"}


def result_rows(result: query_pb2.AggregateResult) -> tuple[list[str], list[list[Any]]]:
    """Header and one row per grid cell, in the gateway's order; a withheld value is None."""
    header = [*result.group_by, *(measure_label(m) for m in result.measures)]
    return header, [_row(cell) for cell in result.cells]


def _row(cell: query_pb2.Cell) -> list[Any]:
    return [*cell.key, *(None if v.withheld else _number(v.value) for v in cell.values)]


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 1)


def disclosure_note(result: query_pb2.AggregateResult) -> str:
    """The terms the figures were released under, in plain words (no count of anything hidden)."""
    d = result.disclosure
    sums = any(m.kind in (query_pb2.MEASURE_KIND_SUM, query_pb2.MEASURE_KIND_MEAN) for m in result.measures)
    dominance = " A sum or mean is also withheld where a few people make up most of it." if sums else ""
    return (
        f"Cells with fewer than k = {d.k} distinct people are withheld, and so are others where needed "
        f"to stop a withheld cell being worked out from the rest; counts and sums are rounded to the "
        f"nearest {d.round_to}, means to one decimal.{dominance}"
    )


def result_json(result: query_pb2.AggregateResult) -> str:
    """``cells``: one object per grid cell (dimension and measure names as keys, withheld = null);
    ``total`` the same for the whole table; ``disclosure`` the terms and the decision id."""
    header, rows = result_rows(result)
    d = result.disclosure
    doc = {
        "group_by": list(result.group_by),
        "measures": [measure_label(m) for m in result.measures],
        "cells": [dict(zip(header, row, strict=True)) for row in rows],
        "total": dict(zip(header[len(result.group_by) :], _row(result.total), strict=True)),
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
    """Header, then one row per grid cell; a withheld value is an empty field. Tidy: no total row
    (it would be summed with the cells), so a query without group-by has its total as its one row."""
    header, rows = result_rows(result)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return buf.getvalue()


def print_result(console: Console, result: query_pb2.AggregateResult, title: str = "") -> None:
    header, rows = result_rows(result)
    dims = len(result.group_by)
    table = Table(title=title or None, header_style="bold", caption_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i < dims else "right")
    for row in rows:
        table.add_row(*(_shown(v) for v in row))
    if dims:
        table.add_section()
        total = ["total", *[""] * (dims - 1)]
        table.add_row(*(_shown(v) for v in [*total, *_row(result.total)]), style="bold")
    console.print(table)
    d = result.disclosure
    console.print(Text(disclosure_note(result), style="dim"))
    console.print(
        Text(
            f"{d.cells_withheld} of {len(rows)} cell(s) withheld. Agreement {d.agreement_id}, "
            f"decision {d.decision_id} (quote it to an auditor), policy revision {d.policy_revision[:12]}.",
            style="dim",
        )
    )


def _shown(value: Any) -> Text:
    return Text(WITHHELD, style="dim italic") if value is None else Text(str(value))


# -- gateway datasets ----------------------------------------------------------------------------


def datasets_doc(datasets: Sequence[query_pb2.QueryableDataset]) -> list[dict[str, Any]]:
    """Everything a query under each (agreement, dataset) is held to, for scripts."""
    return [
        {
            "agreement_id": d.agreement_id,
            "agreement_title": d.agreement_title,
            "purposes": list(d.purposes),
            "dataset": d.contract.dataset,
            "owner_agency": d.contract.owner_agency,
            "contract_version": d.contract.version,
            "group_by": [g for g in d.allowed_dimensions if g not in TIME_GRAINS],
            "time_grains": [g for g in d.allowed_dimensions if g in TIME_GRAINS],
            "max_group_by": d.max_group_by,
            "forbidden_combinations": [list(c.dimensions) for c in d.forbidden_combinations],
            "measures": list(d.allowed_measures),
            "filters": list(d.filters),
            "values": {c.name: list(c.domain) for c in _dimensions(d.contract)},
            "measure_bounds": {c.name: [c.min, c.max] for c in _measures(d.contract)},
            "k": d.k,
            "round_to": d.round_to,
            "max_cells": d.max_cells,
            "query_budget": (
                {"queries": d.query_budget.queries, "period": d.query_budget.period}
                if d.HasField("query_budget")
                else None
            ),
        }
        for d in datasets
    ]


def _dimensions(contract: common_pb2.DatasetContract) -> list[common_pb2.ContractColumn]:
    return [c for c in contract.columns if c.kind == common_pb2.COLUMN_KIND_DIMENSION]


def _measures(contract: common_pb2.DatasetContract) -> list[common_pb2.ContractColumn]:
    return [c for c in contract.columns if c.kind == common_pb2.COLUMN_KIND_MEASURE]


def print_datasets(console: Console, datasets: Sequence[query_pb2.QueryableDataset]) -> None:
    """One two-column table per (agreement, dataset): readable at 80 columns, unlike one wide table."""
    if not datasets:
        console.print("No agreement lets you query any dataset.")
        return
    for d, doc in zip(datasets, datasets_doc(datasets), strict=True):
        title = f"{d.agreement_id} · {d.contract.dataset}"
        table = Table(show_header=False, title=title, title_justify="left")
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")
        for label, text in _dataset_lines(d, doc):
            table.add_row(label, text)
        console.print(table)
        console.print()


def _dataset_lines(d: query_pb2.QueryableDataset, doc: dict[str, Any]) -> list[tuple[str, str]]:
    values: dict[str, list[str]] = doc["values"]
    bounds: dict[str, list[float]] = doc["measure_bounds"]
    combos = "; ".join(" with ".join(c) for c in doc["forbidden_combinations"]) or "none"
    budget = doc["query_budget"]
    return [
        ("agreement", f"{d.agreement_id}: {d.agreement_title}"),
        ("purposes", ", ".join(d.purposes) or "none"),
        ("dataset", f"{d.contract.dataset} (from {d.contract.owner_agency}, contract v{d.contract.version})"),
        ("group by", f"{', '.join(doc['group_by']) or 'none'}  (at most {d.max_group_by} at once)"),
        ("time", ", ".join(doc["time_grains"]) or "none"),
        ("never together", combos),
        ("measures", ", ".join(_measure_words(m, bounds) for m in d.allowed_measures)),
        ("filters", "\n".join(f"{f}: {_values(values.get(f, []))}" for f in d.filters) or "none"),
        ("months", "any range --months FIRST:LAST (YYYY-MM:YYYY-MM); needed to group by time"),
        (
            "disclosure",
            (
                f"cells under k = {d.k} distinct people withheld; counts and sums rounded to "
                f"{d.round_to}; at most {d.max_cells} cells"
            ),
        ),
        (
            "budget",
            f"{budget['queries']} queries per {budget['period']}, shared by everyone under the agreement"
            if budget
            else "no cap on queries",
        ),
        ("example", _example(d, doc)),
    ]


def _measure_words(label: str, bounds: dict[str, list[float]]) -> str:
    kind, _, field = label.partition(":")
    if not field:
        return f"{label} ({_MEASURE_WORDS.get(kind, kind)})"
    low, high = bounds.get(field, [0.0, 0.0])
    return f"{label} (each record clamped to {_number(low)}..{_number(high)})"


def _values(domain: Sequence[str], shown: int = 12) -> str:
    if len(domain) <= shown:
        return ", ".join(domain) or "any"
    return f"{', '.join(domain[:shown])}, … ({len(domain)} values; --json lists them all)"


def _example(d: query_pb2.QueryableDataset, doc: dict[str, Any]) -> str:
    parts = [
        "gateway query --client PROFILE",
        f"--agreement {d.agreement_id}",
        f"--purpose {d.purposes[0] if d.purposes else 'PURPOSE'}",
        f"--dataset {d.contract.dataset}",
    ]
    forbidden = [set(c) for c in doc["forbidden_combinations"]]
    dims = [g for g in doc["group_by"] if {g, "month"} not in forbidden][:1]
    if "month" in doc["time_grains"]:
        dims = [*dims, "month"][: max(d.max_group_by, 1)]
    parts.extend(f"--group-by {g}" for g in dims)
    if "month" in dims:
        parts.append("--months 2025-01:2025-12 --chart trend.png")
    return " ".join(parts)
