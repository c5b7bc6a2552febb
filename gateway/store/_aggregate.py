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
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    FromClause,
    Integer,
    Label,
    Select,
    String,
    Table,
    and_,
    case,
    cast,
    distinct,
    exists,
    func,
    literal_column,
    select,
    true,
    tuple_,
)

from gateway.catalogue import TIME_DIMENSIONS
from gateway.errors import GatewayError, InvalidRequest
from gateway.query._spec import Filters, QuerySpec
from gateway.store._schema import DatasetTable

SUM_SCALE = 1_000_000
"""Sums are added as whole micro-units (``ROUND(x * 10^6)`` as BIGINT) and divided once when read
(``_sql._cell``). Adding doubles gives a result that depends on the order the database adds rows
in, so SQLite and PostgreSQL disagreed in the last bit and a sum of exactly ``4997.5`` rounded to
another released multiple of 5 on one of them; integer addition is exact and order-free. Measures
are clamped by their contract (hours: at most 72), so BIGINT holds over 10^11 rows of them; an
overflow is an error (SQLite) or exact (PostgreSQL sums BIGINT as NUMERIC), never a wrong figure."""

# AS MATERIALIZED arrived in SQLite 3.35; older ones materialise or flatten as they see fit
SQLITE_MATERIALIZED = sqlite3.sqlite_version_info >= (3, 35, 0)


@dataclass(frozen=True)
class AggregateStatements:
    cells: Select[*tuple[Any, ...]]
    total: Select[*tuple[Any, ...]]
    key_count: int
    sum_fields: tuple[str, ...]
    top_n: int = 0  # > 0: each row ends with the top-n contribution sums, one per sum field
    digest: bool = False  # then the people digest SUM(DISTINCT subject_h), and the total the data version
    # top_n >= 2 (see SqlStore.aggregate): the cells' figures without tops, as the analyst's own
    # GROUP BY would count them, each row ending with every sum field's largest value and then
    # its smallest (_extremes); the total's figures without tops
    cells_fast: Select[*tuple[Any, ...]] | None = None
    total_fast: Select[*tuple[Any, ...]] | None = None
    # the total as the cells' statement's last grouping set: no total_fast, and each cells_fast
    # row ends with the data version (digest) and then GROUPING(), 1 on the total's row
    combined: bool = False


FastTotal = Literal["distinct", "grouped", "grouping_set"]
"""How the fast path counts the total's people (``compile_aggregate``)."""


def compile_aggregate(
    spec: QuerySpec,
    tables: Mapping[str, DatasetTable],
    *,
    top_n: int = 0,
    versions: Table | None = None,
    older_rows: bool = True,
    fast_total: FastTotal = "distinct",
    by_number: bool = False,
) -> AggregateStatements:
    """The statements for ``spec``. With ``top_n`` > 0 and sums asked for, each row also ends with
    one figure per sum field: the sum of the ``top_n`` largest per-subject sums in that group.
    With ``versions`` (the batches table), for noise keyed on the people (DESIGN §9.6): each row
    then ends with a digest of its people, SUM(DISTINCT subject_h), order-independent and the same
    however the request was worded, and the total with the dataset's data version (its number
    of stored batches), all read in the same statements. ``fast_total`` chooses how the fast
    path's total counts people: one COUNT(DISTINCT) (PostgreSQL: one process's sort, beside the
    cells' parallel plan), a grouping by subject first (SQLite: its sorter groups a million
    rows in about four fifths of the time its DISTINCT b-tree takes), or as the last grouping
    set of the cells' own statement (PostgreSQL, with a link: the semi-join, which costs more
    than counting the few rows it keeps, then runs once, not once for each statement).
    ``by_number`` counts and groups people by ``subject_n``, which the caller has found to be one
    number per subject (gateway/store/_subject_numbers.py), not by the subject itself."""
    if top_n < 0:
        raise GatewayError("the dominance rule needs a non-negative number of contributors")
    target = _table_for(spec.dataset, "dataset", tables)
    t = target.table.alias("t")
    for f in spec.sum_fields:
        if f not in target.measure_names:
            raise InvalidRequest(f"measures.{f}", "is not a measure of the dataset")
    keys = [_key(t, target, name, f"group_by.{name}").label(f"k{i}") for i, name in enumerate(spec.group_by)]
    person = t.c.subject_n if by_number else t.c.subject
    figures = [
        func.count(distinct(person)).label("subjects"),
        func.count().label("records"),
        *(func.sum(micro_units(t.c[f])).label(f"s{i}") for i, f in enumerate(spec.sum_fields)),
    ]
    conditions = _filters(t, target, spec.filters, "filters")
    # Only rows whose every dimension holds a value of the current contract domain are counted,
    # grouped or not: rows kept from an older contract must neither add cells outside the grid nor
    # make "no filter" count other people than "every value" (which the release ledger takes as
    # the same people, and counts the same way: gateway/store/_ledger.py).
    # (``older_rows`` False: the store holds no batch of another contract version for the dataset,
    # so every row passed the current contract's domains at ingest and the conditions would hold
    # everywhere; leaving them out saves a test per dimension per row, a sixth of a large query)
    if older_rows:
        conditions += current_domain(t, target, exclude={name for name, _ in spec.filters})
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
            if SQLITE_MATERIALIZED:
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
    return _statements(
        spec,
        t,
        keys,
        figures,
        conditions,
        top_n=top_n,
        versions=versions,
        fast_total=fast_total,
        person=person,
    )


def _statements(
    spec: QuerySpec,
    t: FromClause,
    keys: list[Label[str]],
    figures: Sequence[ColumnElement[Any]],
    conditions: list[ColumnElement[bool]],
    *,
    top_n: int,
    versions: Table | None,
    fast_total: FastTotal,
    person: ColumnElement[Any],
) -> AggregateStatements:
    digest = versions is not None
    cells_fast: Select[*tuple[Any, ...]] | None = None
    total_fast: Select[*tuple[Any, ...]] | None = None
    combined = False
    if top_n and spec.sum_fields:
        cells = _with_top_contributions(
            t, keys, conditions, spec.sum_fields, top_n=top_n, digest=digest, person=person
        )
        total = _with_top_contributions(
            t, [], conditions, spec.sum_fields, top_n=top_n, digest=digest, person=person
        )
        if top_n >= 2:
            plain = [*figures, func.sum(distinct(t.c.subject_h)).label("h")] if digest else list(figures)
            extremes = _extremes(t, spec.sum_fields)
            cells_fast = select(*keys, *plain, *extremes).select_from(t).where(*conditions)
            combined = bool(keys) and fast_total == "grouping_set"
            if combined:
                grouped = tuple_(*(k.element for k in keys))
                cells_fast = cells_fast.group_by(func.grouping_sets(grouped, tuple_()))
            else:
                if keys:
                    cells_fast = cells_fast.group_by(*(k.element for k in keys))
                total_fast = _fast_total(
                    t, spec.sum_fields, plain, conditions, fast_total, digest=digest, person=person
                )
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
        if total_fast is not None:
            total_fast = total_fast.add_columns(version.scalar_subquery().label("v"))
        if combined and cells_fast is not None:
            cells_fast = cells_fast.add_columns(version.scalar_subquery().label("v"))
    if combined and cells_fast is not None:
        cells_fast = cells_fast.add_columns(func.grouping(keys[0].element).label("g"))
    return AggregateStatements(
        cells, total, len(keys), spec.sum_fields, top_n, digest, cells_fast, total_fast, combined
    )


def _with_top_contributions(
    t: FromClause,
    keys: list[Label[str]],
    conditions: list[ColumnElement[bool]],
    sum_fields: tuple[str, ...],
    *,
    top_n: int,
    digest: bool,
    person: ColumnElement[Any],
) -> Select[*tuple[Any, ...]]:
    """Subjects, records, sums and the top-``top_n`` per-subject sums per group, in one statement.

    A person with many records is one contributor: the ranking is over per-subject sums within
    the group, never over rows. Ties count as they are (two people with the same largest sum are
    the top two), which is what a ranking gives whichever of them it puts first. The top one is
    a MAX and the top two the MAX plus the largest below it (or the MAX again when two people
    share it), found through the per-group maxima: a hash aggregate each, where a window function
    would sort every (group, person) row (measured: 2.4 times the plain GROUP BY on PostgreSQL
    at 300k rows, the maxima 1.4 times). Three and more rank with a window function."""
    per_subject_query = _per_subject(t, keys, conditions, sum_fields, digest=digest, person=person)
    fields = range(len(sum_fields))
    if top_n == 1:
        ps: FromClause = per_subject_query.subquery("per_subject")
        tops: list[ColumnElement[Any]] = [func.max(ps.c[f"c{i}"]) for i in fields]
        return _figures_over(ps, ps, keys, fields, tops, digest=digest)
    if top_n == 2:
        # materialised: the maxima and the ranking read the same stored sums, so a tie with the
        # maximum is exact equality, and the table is grouped once
        cte = per_subject_query.cte("per_subject")
        if SQLITE_MATERIALIZED:
            cte = cte.prefix_with("MATERIALIZED", dialect="sqlite")
        cte = cte.prefix_with("MATERIALIZED", dialect="postgresql")
        part = [cte.c[k.name] for k in keys]
        maxima_query = select(*part, *(func.max(cte.c[f"c{i}"]).label(f"m{i}") for i in fields))
        maxima = (maxima_query.group_by(*part) if part else maxima_query).subquery("maxima")
        joined = cte.join(maxima, and_(true(), *(cte.c[k.name] == maxima.c[k.name] for k in keys)))
        tops = [_top_two(cte.c[f"c{i}"], maxima.c[f"m{i}"]) for i in fields]
        return _figures_over(cte, joined, keys, fields, tops, digest=digest)
    ps = per_subject_query.subquery("per_subject")
    partition = [ps.c[k.name] for k in keys]
    ranked = select(
        *partition,
        ps.c.r,
        *([ps.c.h] if digest else []),
        *(ps.c[f"c{i}"] for i in fields),
        *(
            func.row_number()
            .over(partition_by=partition or None, order_by=ps.c[f"c{i}"].desc())
            .label(f"n{i}")
            for i in fields
        ),
    ).subquery("ranked")
    n = _inline(top_n)
    tops = [func.sum(case((ranked.c[f"n{i}"] <= n, ranked.c[f"c{i}"]), else_=_inline(0))) for i in fields]
    return _figures_over(ranked, ranked, keys, fields, tops, digest=digest)


def _fast_total(
    t: FromClause,
    sum_fields: tuple[str, ...],
    plain: list[ColumnElement[Any]],
    conditions: list[ColumnElement[bool]],
    how: FastTotal,
    *,
    digest: bool,
    person: ColumnElement[Any],
) -> Select[*tuple[Any, ...]]:
    """The total's figures without tops: ``plain`` over the selection, or grouped by subject first."""
    if how != "grouped":
        return select(*plain).select_from(t).where(*conditions)
    people = _per_subject(t, [], conditions, sum_fields, digest=digest, person=person).subquery("per_subject")
    return _figures_over(people, people, [], range(len(sum_fields)), [], digest=digest)


def _per_subject(
    t: FromClause,
    keys: list[Label[str]],
    conditions: list[ColumnElement[bool]],
    sum_fields: tuple[str, ...],
    *,
    digest: bool,
    person: ColumnElement[Any],
) -> Select[*tuple[Any, ...]]:
    """One row per group and subject (``person``: the subject or its number): its records
    (``r``), its sum of each field (``c0``...), and for noise its subject digest (``h``)."""
    return (
        select(
            *keys,
            func.count().label("r"),
            *(func.sum(micro_units(t.c[f])).label(f"c{i}") for i, f in enumerate(sum_fields)),
            # read only for noise: it would keep the covering indexes from answering alone
            *([func.max(t.c.subject_h).label("h")] if digest else []),
        )
        .select_from(t)
        .where(*conditions)
        .group_by(*(k.element for k in keys), person)
    )


def _extremes(t: FromClause, sum_fields: tuple[str, ...]) -> list[ColumnElement[Any]]:
    """Each sum field's largest value, then each one's smallest, per group: with the group's
    records and subjects they bound its top-n per-subject sums (``_sql._bounded``)."""
    # converted once per group, not per row: ROUND(x * 10^6) never reverses the order of two values
    largest = [micro_units(func.max(t.c[f])).label(f"hi{i}") for i, f in enumerate(sum_fields)]
    smallest = [micro_units(func.min(t.c[f])).label(f"lo{i}") for i, f in enumerate(sum_fields)]
    return [*largest, *smallest]


def _top_two(c: ColumnElement[Any], m: ColumnElement[Any]) -> ColumnElement[Any]:
    """The largest per-subject sum ``c`` of a group plus the second largest (the largest again
    when two people share it); ``m`` is the group's maximum, the same on each of its rows."""
    top = func.max(m)
    shared = func.sum(case((c == m, _inline(1)), else_=_inline(0))) >= _inline(2)
    second = func.coalesce(func.max(case((c < m, c))), _inline(0))
    return top + case((shared, top), else_=second)


def _figures_over(
    rows: FromClause,
    source: FromClause,
    keys: list[Label[str]],
    fields: range,
    tops: Sequence[ColumnElement[Any]],
    *,
    digest: bool,
) -> Select[*tuple[Any, ...]]:
    """The cell figures from per-subject ``rows`` (read through ``source``), grouped by the keys."""
    group = [rows.c[k.name] for k in keys]
    statement = select(
        *group,
        func.count().label("subjects"),
        # COUNT(*) of an empty selection is 0, but its SUM is NULL
        func.coalesce(func.sum(rows.c.r), _inline(0)).label("records"),
        *(func.sum(rows.c[f"c{i}"]).label(f"s{i}") for i in fields),
        *(top.label(f"t{i}") for i, top in enumerate(tops)),  # none, or one per field
        *([func.sum(distinct(rows.c.h)).label("h")] if digest else []),
    ).select_from(source)
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


def current_domain(t: FromClause, target: DatasetTable, *, exclude: set[str]) -> list[ColumnElement[bool]]:
    """Each dimension of the dataset (but ``exclude``, constrained otherwise) to its current domain;
    none when every stored row is known to be in them (DatasetTable.rows_in_domain)."""
    if target.rows_in_domain:
        return []
    return [
        t.c[d.name].in_(list(d.domain))
        for d in target.dataset.dimensions
        if d.name not in exclude and d.domain
    ]


def micro_units(value: ColumnElement[Any]) -> ColumnElement[int]:
    """A measure as whole micro-units (see SUM_SCALE); ROUND is in both SQLite and PostgreSQL."""
    return cast(func.round(value * _inline(SUM_SCALE)), BigInteger)


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
