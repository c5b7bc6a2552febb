"""Compiling a validated QuerySpec into SQL: one grouped statement for the cells, one for the total.

Everything is counted in the database (COUNT(DISTINCT subject), COUNT(*), SUM); no row comes back
to Python. A query with sums or means also gets, per cell, the sum of its ``top_n`` largest
contributions per subject (for the dominance rule, DESIGN §9.4): rows are first summed per cell
and subject, ranked within the cell by a window function, and the top ones summed again, all in
the same statement. Constants inside the time-key expressions are rendered inline, not as bound
parameters: PostgreSQL compares GROUP BY expressions to the select list textually, and
``substr(m, $1, $2)`` in one place and ``substr(m, $5, $6)`` in the other would not match.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Integer,
    Label,
    Select,
    String,
    Table,
    case,
    cast,
    distinct,
    exists,
    func,
    literal_column,
    select,
)

from gateway.catalogue import TIME_DIMENSIONS
from gateway.errors import GatewayError, InvalidRequest
from gateway.query._spec import Filters, QuerySpec
from gateway.store._schema import DatasetTable

# AS MATERIALIZED arrived in SQLite 3.35; older ones materialise or flatten as they see fit
_SQLITE_MATERIALIZED = sqlite3.sqlite_version_info >= (3, 35, 0)


@dataclass(frozen=True)
class AggregateStatements:
    cells: Select[*tuple[Any, ...]]
    total: Select[*tuple[Any, ...]]
    key_count: int
    sum_fields: tuple[str, ...]
    top_n: int = 0  # > 0: each row ends with the top-n contribution sums, one per sum field
    digest: bool = False  # then the people digest SUM(DISTINCT subject_h), and the total the data version


def compile_aggregate(
    spec: QuerySpec,
    tables: Mapping[str, DatasetTable],
    *,
    top_n: int = 0,
    versions: Table | None = None,
) -> AggregateStatements:
    """The statements for ``spec``. With ``top_n`` > 0 and sums asked for, each row also ends with
    one figure per sum field: the sum of the ``top_n`` largest per-subject sums in that group.
    With ``versions`` (the batches table), for noise keyed on the people (DESIGN §9.6): each row
    then ends with a digest of its people, SUM(DISTINCT subject_h), order-independent and the same
    however the request was worded, and the total with the dataset's data version (its number
    of stored batches), all read in the same statements."""
    if top_n < 0:
        raise GatewayError("the dominance rule needs a non-negative number of contributors")
    target = _table_for(spec.dataset, "dataset", tables)
    t = target.table.alias("t")
    for f in spec.sum_fields:
        if f not in target.measure_names:
            raise InvalidRequest(f"measures.{f}", "is not a measure of the dataset")
    keys = [_key(t, target, name, f"group_by.{name}").label(f"k{i}") for i, name in enumerate(spec.group_by)]
    figures = [
        func.count(distinct(t.c.subject)).label("subjects"),
        func.count().label("records"),
        *(func.sum(t.c[f]).label(f"s{i}") for i, f in enumerate(spec.sum_fields)),
    ]
    conditions = _filters(t, target, spec.filters, "filters")
    # Only values of the current contract domain form cells: rows kept from an older contract must
    # neither add cells outside the requested grid nor change whether a query succeeds.
    filtered = {name for name, _ in spec.filters}
    for name in spec.group_by:
        dimension = target.dataset.dimension(name)
        if dimension is not None and name not in filtered:
            conditions.append(t.c[name].in_(list(dimension.domain)))
    if spec.months is not None:
        first, last = spec.months
        conditions.append(t.c.event_month.between(first, last))
    if spec.link is not None:
        link = spec.link
        if link.days_before < 0 or link.days_after < 0:
            field = "link.days_before" if link.days_before < 0 else "link.days_after"
            raise InvalidRequest(field, "must not be negative")
        other = _table_for(link.dataset, "link.dataset", tables)
        o = other.table.alias("o")
        probe: FromClause = o
        probe_filters = _filters(o, other, link.filters, "link.filters")
        if not other.subject_indexed:
            # No index to probe row by row (the ingest profile): SQLite would scan the whole other
            # table once per row. Materialised, the filtered side gets an automatic index built
            # once per query. PostgreSQL ignores the hint (dialect="sqlite"), inlines the CTE and
            # plans the EXISTS as a hash semi-join either way.
            probe = select(o.c.subject, o.c.event_day).where(*probe_filters).cte("link_side")
            if _SQLITE_MATERIALIZED:
                probe = probe.prefix_with("MATERIALIZED", dialect="sqlite")
            probe_filters = []
        conditions.append(
            exists(
                select(literal_column("1"))
                .select_from(probe)
                .where(
                    probe.c.subject == t.c.subject,
                    probe.c.event_day.between(
                        t.c.event_day - link.days_before, t.c.event_day + link.days_after
                    ),
                    *probe_filters,
                )
            )
        )
    return _statements(spec, t, keys, figures, conditions, top_n=top_n, versions=versions)


def _statements(
    spec: QuerySpec,
    t: FromClause,
    keys: list[Label[str]],
    figures: Sequence[ColumnElement[Any]],
    conditions: list[ColumnElement[bool]],
    *,
    top_n: int,
    versions: Table | None,
) -> AggregateStatements:
    digest = versions is not None
    if top_n and spec.sum_fields:
        cells = _with_top_contributions(t, keys, conditions, spec.sum_fields, top_n=top_n, digest=digest)
        total = _with_top_contributions(t, [], conditions, spec.sum_fields, top_n=top_n, digest=digest)
    else:
        if digest:
            figures = [*figures, func.sum(distinct(t.c.subject_h)).label("h")]
        cells = select(*keys, *figures).select_from(t).where(*conditions)
        if keys:
            cells = cells.group_by(*(k.element for k in keys))
        total = select(*figures).select_from(t).where(*conditions)
        top_n = 0
    if versions is not None:
        version = select(func.count()).select_from(versions).where(versions.c.dataset == spec.dataset)
        total = total.add_columns(version.scalar_subquery().label("v"))
    return AggregateStatements(cells, total, len(keys), spec.sum_fields, top_n, digest)


def _with_top_contributions(
    t: FromClause,
    keys: list[Label[str]],
    conditions: list[ColumnElement[bool]],
    sum_fields: tuple[str, ...],
    *,
    top_n: int,
    digest: bool,
) -> Select[*tuple[Any, ...]]:
    """Subjects, records, sums and the top-``top_n`` per-subject sums per group, in one statement.

    A person with many records is one contributor: the ranking is over per-subject sums within
    the group, never over rows. Ties rank in any order, which changes no sum of the top ones."""
    per_subject = (
        select(
            *keys,
            func.count().label("r"),
            *(func.sum(t.c[f]).label(f"c{i}") for i, f in enumerate(sum_fields)),
            # read only for noise: it would keep the covering indexes from answering alone
            *([func.max(t.c.subject_h).label("h")] if digest else []),
        )
        .select_from(t)
        .where(*conditions)
        .group_by(*(k.element for k in keys), t.c.subject)
        .subquery("per_subject")
    )
    partition = [per_subject.c[k.name] for k in keys]
    ranked = select(
        *partition,
        per_subject.c.r,
        *([per_subject.c.h] if digest else []),
        *(per_subject.c[f"c{i}"] for i in range(len(sum_fields))),
        *(
            func.row_number()
            .over(partition_by=partition or None, order_by=per_subject.c[f"c{i}"].desc())
            .label(f"n{i}")
            for i in range(len(sum_fields))
        ),
    ).subquery("ranked")
    group = [ranked.c[k.name] for k in keys]
    n = _inline(top_n)
    statement = select(
        *group,
        func.count().label("subjects"),
        # COUNT(*) of an empty selection is 0, but its SUM is NULL
        func.coalesce(func.sum(ranked.c.r), _inline(0)).label("records"),
        *(func.sum(ranked.c[f"c{i}"]).label(f"s{i}") for i in range(len(sum_fields))),
        *(
            func.sum(case((ranked.c[f"n{i}"] <= n, ranked.c[f"c{i}"]), else_=_inline(0))).label(f"t{i}")
            for i in range(len(sum_fields))
        ),
        *([func.sum(distinct(ranked.c.h)).label("h")] if digest else []),
    ).select_from(ranked)
    return statement.group_by(*group) if group else statement


def time_key(event_month: ColumnElement[str], unit: str) -> ColumnElement[str]:
    """``YYYY-MM`` as is (month), ``YYYY-Qn`` (quarter) or ``YYYY`` (year), in portable SQL."""
    if unit == "month":
        return event_month
    year = func.substr(event_month, _inline(1), _inline(4), type_=String)
    if unit == "year":
        return year
    month_number = cast(func.substr(event_month, _inline(6), _inline(2)), Integer)
    # integer division on both backends: (1..3 -> 1, 4..6 -> 2, ...)
    quarter = (month_number + _inline(2)) // _inline(3)
    return year + literal_column("'-Q'", String) + cast(quarter, String)


def _inline(value: int) -> ColumnElement[int]:
    return literal_column(str(int(value)), Integer)


def _key(t: FromClause, target: DatasetTable, name: str, field: str) -> ColumnElement[str]:
    if name in TIME_DIMENSIONS:
        return time_key(t.c.event_month, name)
    if name not in target.dimension_names:
        raise InvalidRequest(field, "is not a dimension of the dataset")
    column: ColumnElement[str] = t.c[name]
    return column


def _filters(t: FromClause, target: DatasetTable, filters: Filters, field: str) -> list[ColumnElement[bool]]:
    return [_key(t, target, name, f"{field}.{name}").in_(list(values)) for name, values in filters]


def _table_for(name: str, field: str, tables: Mapping[str, DatasetTable]) -> DatasetTable:
    table = tables.get(name)
    if table is None:
        raise InvalidRequest(field, "is not a dataset in the catalogue")
    return table
