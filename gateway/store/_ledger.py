"""The release ledger in the database (DESIGN §9 items 3 and 6): one row per released cell, and
the exact distinct-subject counts the differencing checks of ``gateway.disclosure._ledger`` ask.

Rows are written in the audit entry's own transaction (``write_ledger``, called by
``SqlStore.append_audit``), so a release has both or neither. A cell described exactly as one
already in the agreement's ledger (same people by description) adds no row.

The counts are conditional aggregation over the dataset table: one ``COUNT(DISTINCT CASE WHEN
<predicate> THEN subject END)`` per container and per union of parts, a batch of checks to a
statement, no row ever leaving the database. The ledger is read by ``(agreement_id, dataset)``
through its unique index.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    Select,
    Table,
    and_,
    case,
    distinct,
    exists,
    func,
    literal_column,
    or_,
    select,
    true,
)

from gateway.disclosure._grid import month_keys
from gateway.disclosure._ledger import CellPredicate, Check, LedgerCell, LinkPredicate, from_canonical
from gateway.errors import GatewayError, StoreError
from gateway.store._aggregate import SQLITE_MATERIALIZED, current_domain
from gateway.store._schema import LEDGER_TABLE, DatasetTable, Schema

COLUMNS_PER_STATEMENT = 64  # distinct counts per statement: each is a sort or hash of its own


@dataclass(frozen=True)
class LedgerWrite:
    """The cells one release adds to an agreement's ledger, and the ledger as the check read it:
    ``seen`` is the highest row id then, so a release checked against a ledger that has grown
    since (a racing query) is not written (see ``write_ledger``)."""

    agreement_id: str
    dataset: str
    decision_id: str
    seen: int
    cells: tuple[tuple[CellPredicate, Mapping[str, float]], ...]  # predicate, released values


class LedgerMoved(StoreError):
    """Another release under the same agreement and dataset was written after this one's ledger
    check: nothing was written or released (UNAVAILABLE: asking again is safe)."""

    def __init__(self) -> None:
        super().__init__(
            "release ledger: another answer under this agreement was recorded during the check; ask again"
        )


def ledger_of(schema: Schema) -> Table:
    return schema.metadata.tables[LEDGER_TABLE]


def read_ledger(
    conn: Connection, table: Table, agreement_id: str, dataset: str
) -> tuple[tuple[LedgerCell, ...], int]:
    """The agreement's ledger cells for ``dataset``, and the highest row id among them (0: none)."""
    rows = conn.execute(
        select(table.c.id, table.c.decision_id, table.c.predicate, table.c.released_at).where(
            table.c.agreement_id == agreement_id, table.c.dataset == dataset
        )
    ).all()
    cells = tuple(
        LedgerCell(str(r.decision_id), from_canonical(str(r.predicate)), str(r.released_at)) for r in rows
    )
    return cells, max((int(r.id) for r in rows), default=0)


def write_ledger(conn: Connection, table: Table, write: LedgerWrite, released_at: str) -> bool:
    """Insert the release's new cells, under the audit chain's lock; False (nothing written) if
    rows were added for the agreement and dataset since the check read the ledger."""
    latest = conn.execute(
        select(func.max(table.c.id)).where(
            table.c.agreement_id == write.agreement_id, table.c.dataset == write.dataset
        )
    ).scalar_one()
    if int(latest or 0) != write.seen:
        return False
    present = set(
        conn.execute(
            select(table.c.digest).where(
                table.c.agreement_id == write.agreement_id, table.c.dataset == write.dataset
            )
        ).scalars()
    )
    rows: dict[str, dict[str, Any]] = {}
    again: set[str] = set()
    for predicate, values in write.cells:
        digest = predicate.digest
        if digest in present:
            again.add(digest)  # released again: newcomers are counted from now on
            continue
        if digest in rows:
            continue
        rows[digest] = {
            "agreement_id": write.agreement_id,
            "dataset": write.dataset,
            "digest": digest,
            "decision_id": write.decision_id,
            "predicate": predicate.canonical(),
            "released": json.dumps(dict(values), sort_keys=True),
            "released_at": released_at,
        }
    if rows:
        conn.execute(table.insert(), list(rows.values()))
    if again:
        conn.execute(
            table.update()
            .where(
                table.c.agreement_id == write.agreement_id,
                table.c.dataset == write.dataset,
                table.c.digest.in_(sorted(again)),
            )
            .values(released_at=released_at)
        )
    return True


def newcomer_statement(
    dataset: str, repeats: Sequence[tuple[CellPredicate, str]], schema: Schema
) -> Select[Any]:
    """One statement: per (cell, time), the distinct subjects with a record in the cell stored
    after that time (their batch's received_at), i.e. what has changed since it was released."""
    target = schema.datasets.get(dataset)
    if target is None:
        raise GatewayError("a ledger check names a dataset the store does not hold")
    links = _links_of([p for p, _ in repeats])
    row = _with_links(target.table.alias("t"), target, links, schema.datasets)
    b = schema.batches.alias("b")
    counts: list[ColumnElement[Any]] = [
        _people(row, and_(condition(row, predicate, links, target), b.c.received_at > since)).label(f"n{i}")
        for i, (predicate, since) in enumerate(repeats)
    ]
    earliest = min(since for _, since in repeats)
    return (
        select(*counts)
        .select_from(row.join(b, b.c.batch_id == row.c.batch_id))
        .where(b.c.received_at > earliest)
    )


def difference_statements(
    dataset: str, checks: Sequence[Check], tables: Mapping[str, DatasetTable]
) -> list[tuple[Select[Any], list[tuple[int, int]]]]:
    """Statements counting, for each check, people of the container and of the union of its
    parts; with each statement, per check (column of the container, column of the parts).

    Each distinct link of the checks is worked out once per row, as a column of a derived table
    (``linked``), against the other dataset's filtered side materialised once (SQLite then
    builds an automatic index on it): written inside every count instead, it was one probe per
    row per count, and over a million rows with no index on the other side it ran for minutes."""
    target = tables.get(dataset)
    if target is None:
        raise GatewayError("a ledger check names a dataset the store does not hold")
    t = target.table.alias("t")
    links = _links_of([p for check in checks for p in (check.container, *check.parts)])
    row = _with_links(t, target, links, tables)
    out: list[tuple[Select[Any], list[tuple[int, int]]]] = []
    counts: list[ColumnElement[Any]] = []
    where: list[ColumnElement[bool]] = []
    pairs: list[tuple[int, int]] = []
    for check in checks:
        if len(counts) + 2 > COLUMNS_PER_STATEMENT and counts:
            out.append((select(*counts).select_from(row).where(or_(*where)), pairs))
            counts, where, pairs = [], [], []
        container = condition(row, check.container, links, target)
        parts = or_(*(condition(row, p, links, target) for p in check.parts))
        counts.append(_people(row, container).label(f"c{len(counts)}"))
        counts.append(_people(row, parts).label(f"c{len(counts)}"))
        where.append(container)
        pairs.append((len(counts) - 2, len(counts) - 1))
    if counts:
        out.append((select(*counts).select_from(row).where(or_(*where)), pairs))
    return out


def _links_of(predicates: Sequence[CellPredicate]) -> dict[LinkPredicate, str]:
    links: dict[LinkPredicate, str] = {}
    for predicate in predicates:
        if predicate.link is not None:
            links.setdefault(predicate.link, f"_link{len(links)}")  # dataset columns start with a letter
    return links


def _with_links(
    t: FromClause,
    target: DatasetTable,
    links: Mapping[LinkPredicate, str],
    tables: Mapping[str, DatasetTable],
) -> FromClause:
    """``t``, or its rows with a 0/1 column per link (see difference_statements)."""
    if not links:
        return t
    joined: FromClause = t
    flags: list[ColumnElement[Any]] = []
    for link, name in links.items():
        near = _linked_pairs(target, link, tables, name)
        joined = joined.outerjoin(
            near, and_(near.c.subject == t.c.subject, near.c.event_day == t.c.event_day)
        )
        flags.append(case((near.c.subject.is_not(None), _inline(1)), else_=_inline(0)).label(name))
    return select(*t.c, *flags).select_from(joined).subquery("linked")


def count_differences(
    conn: Connection, statements: Sequence[tuple[Select[Any], list[tuple[int, int]]]]
) -> list[int]:
    """People of each container outside all its parts, in check order."""
    out: list[int] = []
    for statement, pairs in statements:
        row = conn.execute(statement).one()
        out.extend(int(row[c] or 0) - int(row[p] or 0) for c, p in pairs)
    return out


def condition(
    t: FromClause, predicate: CellPredicate, links: Mapping[LinkPredicate, str], target: DatasetTable
) -> ColumnElement[bool]:
    """The records a cell predicate selects, on ``t``: the dataset's rows, with a 0/1 column per
    link (named in ``links``) when any predicate has one. A dimension the predicate leaves free is
    held to its current domain, as the aggregate holds it (_aggregate.current_domain)."""
    parts = _box(t, predicate.dims, predicate.months)
    parts += current_domain(t, target, exclude={name for name, _ in predicate.dims})
    if predicate.link is not None:
        parts.append(t.c[links[predicate.link]] == _inline(1))
    return and_(true(), *parts)


def _people(t: FromClause, when: ColumnElement[bool]) -> ColumnElement[int]:
    return func.count(distinct(case((when, t.c.subject))))


def _box(
    t: FromClause, dims: Sequence[tuple[str, Sequence[str]]], months: Sequence[str] | None
) -> list[ColumnElement[bool]]:
    parts: list[ColumnElement[bool]] = [t.c[name].in_(list(values)) for name, values in dims]
    if months is not None:
        ranges = [t.c.event_month.between(first, last) for first, last in _runs(months)]
        parts.append(or_(*ranges) if ranges else literal_column("1") == literal_column("0"))
    return parts


def _linked_pairs(
    target: DatasetTable, link: LinkPredicate, tables: Mapping[str, DatasetTable], name: str
) -> FromClause:
    """The (subject, event_day) pairs of the dataset whose subject appears in the linked dataset
    within the window: what a link decides depends on nothing else. A WHERE EXISTS, so PostgreSQL
    plans it as a hash semi-join; the other side, filtered, is a CTE that SQLite materialises and
    indexes once (as the aggregate's own link, _aggregate.py). Joined back to every row, each link
    costs one pass; a per-row EXISTS in the counts cost a probe per row per count instead."""
    other = tables.get(link.dataset)
    if other is None:
        raise GatewayError("a ledger check links to a dataset the store does not hold")
    o = other.table.alias(f"o{name}")
    side = select(o.c.subject, o.c.event_day).where(*_box(o, link.dims, link.months)).cte(f"side{name}")
    if SQLITE_MATERIALIZED:
        side = side.prefix_with("MATERIALIZED", dialect="sqlite")
    d = target.table.alias(f"d{name}")
    near = exists(
        select(literal_column("1"))
        .select_from(side)
        .where(
            side.c.subject == d.c.subject,
            side.c.event_day.between(d.c.event_day - link.days_before, d.c.event_day + link.days_after),
        )
    )
    return select(d.c.subject, d.c.event_day).distinct().where(near).subquery(f"pairs{name}")


def _inline(value: int) -> ColumnElement[int]:
    return literal_column(str(int(value)))


def _runs(months: Sequence[str]) -> list[tuple[str, str]]:
    """Sorted months as inclusive runs of consecutive months: fewer, index-friendly ranges."""
    runs: list[tuple[str, str]] = []
    for month in sorted(months):
        if runs and month_keys(runs[-1][1], month)[1:] == (month,):
            runs[-1] = (runs[-1][0], month)
        else:
            runs.append((month, month))
    return runs
