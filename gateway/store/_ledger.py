"""The release ledger in the database (DESIGN §9 items 3 and 6): one row per released cell, and
the exact distinct-subject counts the differencing checks of ``gateway.disclosure._ledger`` ask.

Rows are written in the audit entry's own transaction (``write_ledger``, called by
``SqlStore.append_audit``), so a release has both or neither. A cell described exactly as one
already in the agreement's ledger (same people by description) adds no row.

The counts are conditional aggregation over the dataset table: one ``COUNT(DISTINCT CASE WHEN
<predicate> THEN subject END)`` per container and per union of parts, a batch of checks to a
statement, no row ever leaving the database. (By an answer's watermark, once the store has seen
its numbers match its subjects one to one, people are counted by ``subject_n``:
``DatasetTable.person``.) The ledger is read by ``(agreement_id, dataset)`` through its unique
index.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Connection,
    FromClause,
    Select,
    Table,
    and_,
    case,
    distinct,
    exists,
    false,
    func,
    literal_column,
    or_,
    select,
    true,
    union_all,
)

from gateway.disclosure._ledger import (
    CellPredicate,
    Check,
    LedgerCell,
    LinkPredicate,
    PairGroup,
    container_layers,
    from_canonical,
    grouped_pairs,
)
from gateway.errors import GatewayError, StoreError
from gateway.store._aggregate import SQLITE_MATERIALIZED, SUM_SCALE, current_domain, micro_units
from gateway.store._cell_union import box_conditions, narrowing, union_condition
from gateway.store._schema import LEDGER_TABLE, DatasetTable, Schema

COLUMNS_PER_STATEMENT = 64  # distinct counts per statement: each is a sort or hash of its own

AsOf = tuple[Table, str] | None
"""(the batch register, an answer's watermark): count only the records of batches stamped by
then, the data the answer read (gateway/store/_watermark.py); None: every record stored."""


@dataclass(frozen=True)
class LedgerWrite:
    """The cells one release adds to an agreement's ledger, and the ledger as the check read it:
    ``seen`` is its version then (``ledger_version``), so a release checked against a ledger that
    another release has written to since (a racing query) is not written (see ``write_ledger``).
    ``released_at`` is the answer's
    data watermark (``RawResult.watermark``): the batches stamped after it were not in the answer,
    and newcomer checks count their people as new (gateway/store/_watermark.py)."""

    agreement_id: str
    dataset: str
    decision_id: str
    seen: int
    cells: tuple[tuple[CellPredicate, Mapping[str, float]], ...]  # predicate, released values
    released_at: str


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
    """The agreement's ledger cells for ``dataset``, and the ledger's version (0: no cells)."""
    rows = conn.execute(
        select(
            table.c.id, table.c.decision_id, table.c.predicate, table.c.released_at, table.c.released
        ).where(table.c.agreement_id == agreement_id, table.c.dataset == dataset)
    ).all()
    cells = tuple(
        LedgerCell(
            str(r.decision_id),
            from_canonical(str(r.predicate)),
            str(r.released_at),
            frozenset(_released_values(r.released)),
        )
        for r in rows
    )
    return cells, ledger_version(rows)


def ledger_version(rows: Sequence[Any]) -> int:
    """0 for an empty ledger, else a 63-bit digest of every row's id, release watermark and
    released values. Any write changes it, an insert or an update alike: two racing repeats of
    the same question insert no row (their cells are there already) and only move
    ``released_at``; compared by the highest id, both passed, so two answers from different
    data left the ledger and the people between them were never counted."""
    if not rows:
        return 0
    digest = hashlib.sha256()
    for r in sorted(rows, key=lambda r: int(r.id)):
        digest.update(f"{int(r.id)}\x1f{r.released_at}\x1f{r.released}\x1e".encode())
    return int.from_bytes(digest.digest()[:8], "big") >> 1 or 1


def write_ledger(conn: Connection, table: Table, write: LedgerWrite) -> bool:
    """Insert the release's new cells, under the audit chain's lock; False (nothing written) if
    any release wrote to the agreement's ledger for the dataset since the check read it."""
    current = conn.execute(
        select(table.c.id, table.c.digest, table.c.released_at, table.c.released).where(
            table.c.agreement_id == write.agreement_id, table.c.dataset == write.dataset
        )
    ).all()
    if ledger_version(current) != write.seen:
        return False
    present = {str(r.digest): _released_values(r.released) for r in current}
    # never back: newcomers count from the newest data a cell was released from; a cell released
    # again from the data it was last released from (a repeat) keeps its row as it is
    older = {str(r.digest) for r in current if str(r.released_at) < write.released_at}
    rows: dict[str, dict[str, Any]] = {}
    again: set[str] = set()
    for predicate, values in write.cells:
        digest = predicate.digest
        if digest in present:
            if digest in older:
                again.add(digest)  # released again from newer data: newcomers count from now on
            shown = present[digest]
            if not set(values) <= set(shown):  # a measure it had not released before: kept too
                merged = {**values, **shown}
                conn.execute(
                    table.update()
                    .where(
                        table.c.agreement_id == write.agreement_id,
                        table.c.dataset == write.dataset,
                        table.c.digest == digest,
                    )
                    .values(released=json.dumps(merged, sort_keys=True))
                )
                present[digest] = merged
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
            "released_at": write.released_at,
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
                table.c.released_at < write.released_at,
            )
            .values(released_at=write.released_at)
        )
    return True


def _released_values(text: Any) -> dict[str, float]:
    """The released figures a ledger row holds, by measure label."""
    try:
        values = json.loads(str(text))
    except ValueError as exc:
        raise GatewayError("a release ledger entry holds no readable released values") from exc
    if not isinstance(values, dict):
        raise GatewayError("a release ledger entry holds no readable released values")
    return {str(label): value for label, value in values.items()}


def newcomer_statement(
    dataset: str, repeats: Sequence[tuple[CellPredicate, str]], schema: Schema, as_of: AsOf = None
) -> Select[Any]:
    """One statement: per (cell, time), the distinct subjects new to the cell since that time:
    every record of theirs in the cell changed after it, none was in the cell then. A record
    changed when it was stored since (its batch's received_at) or, for a linked cell, when the
    link keeps it now but did not on the other dataset's records stored by then (only the other
    side grew). Data is only appended and links only grow, so an unchanged record in the cell now
    was in it then: a returning person (one more record) leaves the cell's count as it was, and
    counted as new would pad a few true newcomers up to k.

    Per subject, the smallest 0/1 "changed" over their records in the cell is 1 exactly when they
    are new to it; only subjects with a record stored since (here or on a linked side) can be."""
    target = schema.datasets.get(dataset)
    if target is None:
        raise GatewayError("a ledger check names a dataset the store does not hold")
    links = _links_of([p for p, _ in repeats])
    earlier: dict[tuple[LinkPredicate, str], str] = {}
    for predicate, since in repeats:
        if predicate.link is not None:
            earlier.setdefault((predicate.link, since), f"_then{len(earlier)}")
    row = _with_links(
        _rows(target.table, "t", as_of),
        target,
        links,
        schema.datasets,
        earlier=earlier,
        batches=schema.batches,
        as_of=as_of,
    )
    b = schema.batches.alias("b")
    newest: list[ColumnElement[Any]] = []
    for i, (predicate, since) in enumerate(repeats):
        changed = b.c.received_at > since
        if predicate.link is not None:
            changed = or_(changed, row.c[earlier[(predicate.link, since)]] == _inline(0))
        in_cell = condition(row, predicate, links, target)
        flag = case((changed, _inline(1)), else_=_inline(0))
        newest.append(func.min(case((in_cell, flag))).label(f"m{i}"))
    involved = sorted({dataset, *(link.dataset for link in links)})
    earliest = min(since for _, since in repeats)
    per_subject = (
        select(*newest)
        .select_from(row.join(b, b.c.batch_id == row.c.batch_id))
        .where(row.c.subject.in_(_stored_since(schema, involved, earliest, as_of)))
        .group_by(row.c.subject)
        .subquery("per_subject")
    )
    new: list[ColumnElement[Any]] = [
        func.count(case((per_subject.c[f"m{i}"] == _inline(1), _inline(1)))).label(f"n{i}")
        for i in range(len(repeats))
    ]
    return select(*new).select_from(per_subject)


def _stored_since(schema: Schema, datasets: Sequence[str], since: str, as_of: AsOf) -> CompoundSelect[Any]:
    """The subjects with a record in ``datasets`` stored after ``since`` (and by ``as_of``): a
    record changed since in a cell is one of theirs, or linked through one of theirs."""
    batches = schema.batches
    parts: list[Select[Any]] = []
    for name in datasets:
        recent = select(batches.c.batch_id).where(batches.c.dataset == name, batches.c.received_at > since)
        if as_of is not None:
            recent = recent.where(batches.c.received_at <= as_of[1])
        table = schema.datasets[name].table
        parts.append(select(table.c.subject).where(table.c.batch_id.in_(recent)))
    return union_all(*parts)


def sum_difference_statement(
    dataset: str,
    items: Sequence[tuple[Check, str]],
    tables: Mapping[str, DatasetTable],
    top_n: int,
    as_of: AsOf = None,
) -> Select[Any]:
    """One statement: for each (check, measure field), the field's sum over the records of the
    check's container outside all its parts, and the sum of the ``top_n`` largest per-subject
    sums among them (the dominance rule's figures), as whole micro-units like the aggregate's.

    Each distinct container and union of parts is a 0/1 flag worked out once per row, and each
    field's micro-units once, below a fence (OFFSET 0) that keeps PostgreSQL from copying them
    into every use; per-subject sums are grouped once for every item. The top one or two are
    found through the maxima (two passes over the per-subject sums for every item), as the
    aggregate finds a cell's; three and more rank each item's column. Written per item instead,
    32 items of a linked question asked after a 720-cell grid took 26 s at 1M rows: the shared
    container's condition evaluated in every item's sum, and a sort of the sums per item."""
    if top_n < 1:
        raise GatewayError("the dominance rule needs at least one contributor")
    flagged, flags, fields = _flagged_rows(dataset, [check for check, _ in items], items, tables, as_of)
    columns: list[ColumnElement[Any]] = []
    for i, (check, field) in enumerate(items):
        value = flagged.c[f"v{fields.index(field)}"]
        columns.append(func.sum(case((_outside_parts(flagged, flags, check), value))).label(f"d{i}"))
    people = select(flagged.c.s, *columns).group_by(flagged.c.s).cte("per_subject")
    if SQLITE_MATERIALIZED:
        people = people.prefix_with("MATERIALIZED", dialect="sqlite")
    if top_n <= 2:
        return _top_two(people, len(items), top_n)
    figures: list[ColumnElement[Any]] = []
    for i in range(len(items)):
        value = people.c[f"d{i}"]
        largest = select(value.label("x")).where(value.is_not(None)).order_by(value.desc())
        top = largest.limit(top_n).subquery()
        figures.append(select(func.sum(value)).scalar_subquery().label(f"s{i}"))
        figures.append(select(func.sum(top.c.x)).scalar_subquery().label(f"t{i}"))
    return select(*figures)


def _flagged_rows(
    dataset: str,
    checks: Sequence[Check],
    items: Sequence[tuple[Check, str]],
    tables: Mapping[str, DatasetTable],
    as_of: AsOf,
) -> tuple[FromClause, dict[object, int], list[str]]:
    """The records inside any of the checks' containers: the subject (``s``), each item field's
    micro-units (``v<n>``, n in the returned field list) and a 0/1 flag per distinct container and
    union of parts (``f<n>``, n in the returned map), below an OFFSET 0 fence."""
    target, row, links = _checked_rows(
        dataset, [p for check in checks for p in (check.container, *check.parts)], tables, as_of
    )
    flags: dict[object, int] = {}
    conditions: list[ColumnElement[bool]] = []
    containers: list[ColumnElement[bool]] = []
    fields = sorted({field for _, field in items})
    for check in checks:
        if ("c", check.container) not in flags:
            flags["c", check.container] = len(conditions)
            conditions.append(condition(row, check.container, links, target))
            containers.append(conditions[-1])
        if check.parts and ("p", check.parts) not in flags:
            flags["p", check.parts] = len(conditions)
            conditions.append(union_condition(row, check.parts, links, target))
    # dataset columns are NOT NULL and link columns 0 or 1: a condition is never NULL, its flag exact
    flagged = (
        select(
            target.person(row).label("s"),
            *(micro_units(row.c[field]).label(f"v{n}") for n, field in enumerate(fields)),
            *(case((when, _inline(1)), else_=_inline(0)).label(f"f{n}") for n, when in enumerate(conditions)),
        )
        .select_from(row)
        .where(or_(*containers))
        .offset(0)
        .subquery("flagged")
    )
    return flagged, flags, fields


def _outside_parts(flagged: FromClause, flags: Mapping[object, int], check: Check) -> ColumnElement[bool]:
    """A flagged record is in the check's container and in none of its parts."""
    inside = flagged.c[f"f{flags['c', check.container]}"] == _inline(1)
    if check.parts:
        inside = and_(inside, flagged.c[f"f{flags['p', check.parts]}"] == _inline(0))
    return inside


BOUND_ITEMS_PER_STATEMENT = COLUMNS_PER_STATEMENT // 2
"""Items whose parts one statement sums (``sum_bounds``), as many as the exact statement takes:
the WHERE ORs all their parts, and SQLite allows an expression 1,000 deep."""


def sum_bounds(
    conn: Connection,
    dataset: str,
    items: Sequence[tuple[Check, str]],
    tables: Mapping[str, DatasetTable],
    *,
    top_n: int,
    as_of: AsOf = None,
) -> list[tuple[float, float] | None]:
    """Per (check, field) item: the field's sum over the check's difference, exactly, and an upper
    bound of its top-n per-subject sums; None where the container holds a negative value.

    The sum is the container's sum less the sum over its records in any of the check's parts:
    the first read once per (container, field), the second only over the records of some part
    (few, where the parts are a new question's cells). With no negative value in the container,
    each person's sum outside the parts is at most their sum over the whole container, so the
    difference's top n are at most the container's own top n (the top two; with n of three and
    more, n times the largest): one grouping by person per container, not per item. The one-part
    checks ``grouped_pairs`` groups are read through the records' labels (``_labelled``), a
    grouping by label; the others through a CASE per container or item. Worked out exactly, per
    item, 61 items of a linked question asked after a 720-cell grid took 15 s at 1M rows."""
    if top_n < 1:
        raise GatewayError("the dominance rule needs at least one contributor")
    target = tables.get(dataset)
    if target is None:
        raise GatewayError("a ledger check names a dataset the store does not hold")
    checks = list(dict.fromkeys(check for check, _ in items))
    figures: dict[tuple[Check, str], tuple[int, int | None, int, int]] = {}  # sum, least, top, in parts
    # a grouped container's figures serve its other checks too (a new question's total beside
    # its cells): it is grouped by person once
    whole: dict[tuple[CellPredicate, str], tuple[int, int | None, int]] = {}  # sum, least, top
    labelled: set[Check] = set()
    for layer in container_layers(grouped_pairs(checks)[0]):
        labels = {checks[n]: (c, number) for c, number, n in _numbered(layer)}
        layer_items = [(check, field) for check, field in items if check in labels]
        fields = sorted({field for _, field in layer_items})
        wholes, parts = _grouped_sums(conn, dataset, layer, tables, fields, top_n=top_n, as_of=as_of)
        for check, field in layer_items:
            c, number = labels[check]
            total, least, top = wholes.get((c, field), (0, None, 0))
            figures[check, field] = (total, least, top, parts.get((c, number, field), 0))
        whole |= {(layer[c][0], field): figure for (c, field), figure in wholes.items()}
        labelled |= set(labels)
    others = [(check, field) for check, field in items if check not in labelled]
    keys = [
        key for key in dict.fromkeys((check.container, field) for check, field in others) if key not in whole
    ]
    step = COLUMNS_PER_STATEMENT // 2
    for i in range(0, len(keys), step):
        chunk = keys[i : i + step]
        sums = conn.execute(_container_sums(target, chunk, tables, as_of)).one()
        tops = conn.execute(_container_tops(target, chunk, tables, top_n, as_of)).one()
        for j, key in enumerate(chunk):
            least = sums[2 * j + 1]
            whole[key] = (
                int(sums[2 * j] or 0),
                None if least is None else int(least),
                int(tops[2 * j + 1] or 0),
            )
    for i in range(0, len(others), BOUND_ITEMS_PER_STATEMENT):
        chunk_items = others[i : i + BOUND_ITEMS_PER_STATEMENT]
        statement = _part_sums(target, chunk_items, tables, as_of)
        inside = (
            [0] * len(chunk_items)
            if statement is None
            else [int(v or 0) for v in conn.execute(statement).one()]
        )
        for (check, field), in_parts in zip(chunk_items, inside, strict=True):
            figures[check, field] = (*whole[check.container, field], in_parts)
    out: list[tuple[float, float] | None] = []
    for check, field in items:
        total, least, top, in_parts = figures[check, field]
        if least is not None and least < 0:
            out.append(None)
        else:
            out.append(((total - in_parts) / SUM_SCALE, (top if top_n <= 2 else top * top_n) / SUM_SCALE))
    return out


def _numbered(groups: Sequence[PairGroup]) -> Iterator[tuple[int, int, int]]:
    """(container number, part number, check number) of every grouped check, numbered as
    ``_labelled`` labels them."""
    number = 0
    for c, (_, pairs) in enumerate(groups):
        for check, _ in pairs:
            yield c, number, check
            number += 1


def _grouped_sums(
    conn: Connection,
    dataset: str,
    groups: Sequence[PairGroup],
    tables: Mapping[str, DatasetTable],
    fields: Sequence[str],
    *,
    top_n: int,
    as_of: AsOf,
) -> tuple[dict[tuple[int, str], tuple[int, int | None, int]], dict[tuple[int, int, str], int]]:
    """Per (container number, field): its sum, smallest value and top one or two per-subject
    sums (the largest alone for n of 1 or of three and more); per (container, part, field): the
    sum over the part's records inside the container."""
    people, parted = _labelled(dataset, groups, tables, as_of, fields)
    wholes: dict[tuple[int, str], tuple[int, int | None, int]] = {}
    for n, field in enumerate(fields):
        value = people.c[f"v{n}"]
        per_subject = (
            select(people.c._c, func.sum(value).label("d"), func.min(value).label("lo"))
            .where(people.c._c.is_not(None))
            .group_by(people.c._c, people.c._s)
            .cte("per_subject")
        )
        if SQLITE_MATERIALIZED:  # read twice below: grouped once
            per_subject = per_subject.prefix_with("MATERIALIZED", dialect="sqlite")
        maxima = (
            select(per_subject.c._c, func.max(per_subject.c.d).label("m"))
            .group_by(per_subject.c._c)
            .subquery("maxima")
        )
        d, m = per_subject.c.d, maxima.c.m
        # one maxima row per container: its value, as the grouping needs
        top: ColumnElement[Any] = func.max(m)
        if top_n == 2:
            shared = func.count(case((d == m, _inline(1)))) >= _inline(2)
            top = top + case((shared, top), else_=func.coalesce(func.max(case((d < m, d))), _inline(0)))
        statement = (
            select(per_subject.c._c, func.sum(d), func.min(per_subject.c.lo), top)
            .select_from(per_subject.join(maxima, maxima.c._c == per_subject.c._c))
            .group_by(per_subject.c._c)
        )
        for c, total, least, largest in conn.execute(statement).all():
            wholes[int(c), field] = (
                int(total or 0),
                None if least is None else int(least),
                int(largest or 0),
            )
    part_sums = (
        select(parted.c._c, parted.c._p, *(func.sum(parted.c[f"v{n}"]) for n in range(len(fields))))
        .where(parted.c._p.is_not(None))
        .group_by(parted.c._c, parted.c._p)
    )
    parts: dict[tuple[int, int, str], int] = {}
    for c, number, *sums in conn.execute(part_sums).all():
        for field, total in zip(fields, sums, strict=True):
            parts[int(c), int(number), field] = int(total or 0)
    return wholes, parts


def _linked_rows(
    target: DatasetTable,
    predicates: Sequence[CellPredicate],
    tables: Mapping[str, DatasetTable],
    as_of: AsOf,
) -> tuple[FromClause, dict[LinkPredicate, str]]:
    """The table's rows (by ``as_of``) with a 0/1 column per link the predicates need (the table
    alone when none does), and those columns' names."""
    links = _links_of(predicates)
    return _with_links(_rows(target.table, "t", as_of), target, links, tables, as_of=as_of), links


def _container_sums(
    target: DatasetTable,
    keys: Sequence[tuple[CellPredicate, str]],
    tables: Mapping[str, DatasetTable],
    as_of: AsOf,
) -> Select[Any]:
    """Per (container, field): the field's sum over the container, then its smallest value."""
    row, links = _linked_rows(target, [c for c, _ in keys], tables, as_of)
    conditions = {c: condition(row, c, links, target) for c, _ in keys}
    figures: list[ColumnElement[Any]] = []
    for j, (container, field) in enumerate(keys):
        value = micro_units(row.c[field])
        figures.append(func.sum(case((conditions[container], value))).label(f"s{j}"))
        figures.append(func.min(case((conditions[container], value))).label(f"lo{j}"))
    return select(*figures).select_from(row).where(or_(*conditions.values()))


def _container_tops(
    target: DatasetTable,
    keys: Sequence[tuple[CellPredicate, str]],
    tables: Mapping[str, DatasetTable],
    top_n: int,
    as_of: AsOf,
) -> Select[Any]:
    """Per (container, field), as ``_top_two`` writes them: the sum, and the top ``top_n``
    per-subject sums over the container (with n of three and more, the largest alone)."""
    row, links = _linked_rows(target, [c for c, _ in keys], tables, as_of)
    conditions = {c: condition(row, c, links, target) for c, _ in keys}
    per_key = [
        func.sum(case((conditions[container], micro_units(row.c[field])))).label(f"d{j}")
        for j, (container, field) in enumerate(keys)
    ]
    people = (
        select(target.person(row).label("s"), *per_key)
        .select_from(row)
        .where(or_(*conditions.values()))
        .group_by(target.person(row))
        .cte("per_subject")
    )
    if SQLITE_MATERIALIZED:
        people = people.prefix_with("MATERIALIZED", dialect="sqlite")
    return _top_two(people, len(keys), top_n if top_n <= 2 else 1)


def _part_sums(
    target: DatasetTable,
    items: Sequence[tuple[Check, str]],
    tables: Mapping[str, DatasetTable],
    as_of: AsOf,
) -> Select[Any] | None:
    """Per item: its field's sum over the container's records in any of the check's parts, read
    only from the records in some part of some item (None: no item has parts)."""
    with_parts = [check for check, _ in items if check.parts]
    if not with_parts:
        return None
    every_part = [part for check in with_parts for part in check.parts]
    row, links = _linked_rows(
        target, [p for check in with_parts for p in (check.container, *check.parts)], tables, as_of
    )
    figures: list[ColumnElement[Any]] = []
    for i, (check, field) in enumerate(items):
        if not check.parts:
            figures.append(_inline(0).label(f"p{i}"))
            continue
        inside = and_(
            condition(row, check.container, links, target), union_condition(row, check.parts, links, target)
        )
        figures.append(func.sum(case((inside, micro_units(row.c[field])))).label(f"p{i}"))
    return select(*figures).select_from(row).where(union_condition(row, every_part, links, target))


def _top_two(people: FromClause, items: int, top_n: int) -> Select[Any]:
    """Per item ``d<i>`` of ``people``: its sum and the sum of its ``top_n`` (1 or 2) largest
    values. The largest is the MAX; the top two are the MAX and the largest value below it, or
    the MAX again when two people share it (as a ranking counts ties)."""
    maxima = select(
        *(func.sum(people.c[f"d{i}"]).label(f"s{i}") for i in range(items)),
        *(func.max(people.c[f"d{i}"]).label(f"m{i}") for i in range(items)),
    ).cte("maxima")
    if top_n == 1:
        return select(*(c for i in range(items) for c in (maxima.c[f"s{i}"], maxima.c[f"m{i}"])))
    second: list[ColumnElement[Any]] = []
    for i in range(items):
        value, largest = people.c[f"d{i}"], maxima.c[f"m{i}"]
        shared = func.count(case((value == largest, _inline(1)))) >= _inline(2)
        below = func.max(case((value < largest, value)))
        top = func.max(largest)  # one row of maxima: its value, as the grouping needs
        second += [
            func.max(maxima.c[f"s{i}"]),
            top + case((shared, top), else_=func.coalesce(below, _inline(0))),
        ]
    return select(*second).select_from(people.join(maxima, true()))


def sum_differences(conn: Connection, statement: Select[Any], items: int) -> list[tuple[float, float]]:
    """(sum, top-n sum) per item of ``sum_difference_statement``, in the aggregate's units."""
    row = conn.execute(statement).one()
    return [(int(row[2 * i] or 0) / SUM_SCALE, int(row[2 * i + 1] or 0) / SUM_SCALE) for i in range(items)]


def difference_statements(
    dataset: str,
    checks: Sequence[Check],
    tables: Mapping[str, DatasetTable],
    as_of: AsOf = None,
    known: Mapping[CellPredicate, int] | None = None,
) -> list[tuple[Select[Any], list[tuple[int, int]]]]:
    """Statements counting, for each check, people of the container and of the union of its
    parts; with each statement, per check (column of the container, column of the parts).

    Each distinct link of the checks is worked out once per row, as a column of a derived table
    (``linked``), against the other dataset's filtered side materialised once (SQLite then
    builds an automatic index on it): written inside every count instead, it was one probe per
    row per count, and over a million rows with no index on the other side it ran for minutes.

    A container in ``known`` (its people, counted in the same snapshot by a grouped statement)
    is not counted again: its checks' statement reads only the records of its parts inside it,
    where a new question's total beside its cells read every record of the released total."""
    known = known or {}
    target, row, links = _checked_rows(
        dataset, [p for check in checks for p in (check.container, *check.parts)], tables, as_of
    )
    out: list[tuple[Select[Any], list[tuple[int, int]]]] = []
    counts: list[ColumnElement[Any]] = []
    where: list[ColumnElement[bool]] = []
    pairs: list[tuple[int, int]] = []
    # a container or a union of parts several checks share is counted once: each count is a
    # sort of its own, and the checks of a question against one released total share it
    # (61 checks of a linked question asked after a 720-cell grid, at 1M rows: 61 sorts)
    numbers: dict[object, int] = {}
    for check in checks:
        if len(counts) + 2 > COLUMNS_PER_STATEMENT and counts:
            out.append((_counted(row, counts, where), pairs))
            counts, where, pairs, numbers = [], [], [], {}
        container = condition(row, check.container, links, target)
        if ("c", check.container) not in numbers:
            numbers["c", check.container] = len(counts)
            if check.container in known:
                counts.append(_inline(known[check.container]).label(f"c{len(counts)}"))
            else:
                counts.append(_people(row, container, target).label(f"c{len(counts)}"))
                where.append(container)
        # the parts' people among the container's records only, as the check counted alone would:
        # a part reaching outside its container (an older contract's cell) otherwise counted
        # people of the other checks' containers too, and the figure hung on the batching
        key = ("p", check.container, check.parts)
        if key not in numbers:
            numbers[key] = len(counts)
            if check.parts:
                parts = and_(union_condition(row, check.parts, links, target), container)
                counts.append(_people(row, parts, target).label(f"c{len(counts)}"))
                if check.container in known:
                    where.append(parts)
            else:  # an overlap check has none: the cell's own people must number k
                counts.append(_inline(0).label(f"c{len(counts)}"))
        pairs.append((numbers["c", check.container], numbers[key]))
    if counts:
        out.append((_counted(row, counts, where), pairs))
    return out


def _counted(
    row: FromClause, counts: Sequence[ColumnElement[Any]], where: Sequence[ColumnElement[bool]]
) -> Select[Any]:
    # no record to read when every container is known and no check has parts: one row of literals
    return select(*counts).select_from(row).where(or_(*where) if where else false())


def _checked_rows(
    dataset: str, predicates: Sequence[CellPredicate], tables: Mapping[str, DatasetTable], as_of: AsOf
) -> tuple[DatasetTable, FromClause, dict[LinkPredicate, str]]:
    """The dataset's table, its rows (by ``as_of``) with a 0/1 column per link the predicates
    need, and those columns' names."""
    target = tables.get(dataset)
    if target is None:
        raise GatewayError("a ledger check names a dataset the store does not hold")
    return (target, *_linked_rows(target, predicates, tables, as_of))


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
    *,
    earlier: Mapping[tuple[LinkPredicate, str], str] | None = None,
    batches: Table | None = None,
    as_of: AsOf = None,
) -> FromClause:
    """``t``, or its rows with a 0/1 column per link (see difference_statements), and one per
    (link, time) in ``earlier``: the link as the other dataset's records stored by then decide it.
    With ``as_of``, the links' own columns are decided by the records stored by then too."""
    flagged: list[tuple[LinkPredicate, str, str | None]] = [
        (link, name, None) for link, name in links.items()
    ]
    flagged += [(link, name, since) for (link, since), name in (earlier or {}).items()]
    if not flagged:
        return t
    joined: FromClause = t
    flags: list[ColumnElement[Any]] = []
    for link, name, since in flagged:
        before = as_of if since is None else None if batches is None else (batches, since)
        near = _linked_pairs(target, link, tables, name, before)
        joined = joined.outerjoin(
            near, and_(near.c.subject == t.c.subject, near.c.event_day == t.c.event_day)
        )
        flags.append(case((near.c.subject.is_not(None), _inline(1)), else_=_inline(0)).label(name))
    return select(*t.c, *flags).select_from(joined).subquery("linked")


def grouped_statement(
    dataset: str, groups: Sequence[PairGroup], tables: Mapping[str, DatasetTable], as_of: AsOf = None
) -> CompoundSelect[Any]:
    """One statement for the one-part checks of ``groups``, one layer of ``container_layers`` (its
    containers pairwise disjoint; see ``grouped_pairs``): people counted per container (part -1)
    over its records, and per (container, part) over the part's records inside its own container
    (``_labelled``).

    |C| and, per part, the people with a record in it: what each check counted alone counts (a
    person with records in P and elsewhere in C is not outside P; counting "people with a record
    outside P" instead was larger, and let |C| - |P| in 1..k-1 through)."""
    people, parted = _labelled(dataset, groups, tables, as_of)
    in_container = (
        select(people.c._c, _inline(-1).label("_p"), func.count(distinct(people.c._s)))
        .where(people.c._c.is_not(None))
        .group_by(people.c._c)
    )
    in_part = (
        select(parted.c._c, parted.c._p, func.count(distinct(parted.c._s)))
        .where(parted.c._p.is_not(None))
        .group_by(parted.c._c, parted.c._p)
    )
    return union_all(in_container, in_part)


def _labelled(
    dataset: str,
    groups: Sequence[PairGroup],
    tables: Mapping[str, DatasetTable],
    as_of: AsOf,
    fields: Sequence[str] = (),
) -> tuple[FromClause, FromClause]:
    """The records of the groups' containers, each labelled with its container's number (``_c``:
    NULL outside them all) and its subject (``_s``); and the records of some part, labelled with
    their container and with the number of the part they are in inside it (``_p``, parts
    numbered in group order: NULL in none). Each field's micro-units ride along as ``v<n>``.

    The containers are disjoint (one layer) and so are a group's parts, and a part is labelled
    only inside its own container: each record has one container label at most and one part
    label at most. The containers are read from the table alone unless one needs a link, and a record is tried
    against its own container's parts only. Labelling every row with both at once, against
    every part, cost a linked question asked after a 720-cell grid (60 parts, 1M rows) 2.8 s of
    its 3.8 s of counts; the whole check of that grid asked again by year (720 parts under 60
    containers) took 47 s, 13 s this way (PostgreSQL)."""
    containers = [container for container, _ in groups]
    every_part = [part for _, pairs in groups for _, part in pairs]
    target, row, links = _checked_rows(dataset, [*containers, *every_part], tables, as_of)
    # the containers are read from ``row`` when one needs a link: a second link join, built apart,
    # would name its CTEs as ``row``'s do and the statement would not compile
    base, base_links = (
        (row, links) if _links_of(containers) else _linked_rows(target, containers, tables, as_of)
    )
    everything = set(target.dimension_names)
    free = [everything - {name for name, _ in container.dims} for container in containers]
    common = set.intersection(*free) if free else set()

    def label(on: FromClause, on_links: Mapping[LinkPredicate, str]) -> ColumnElement[Any]:
        def holds(c: int, skip: str | None) -> ColumnElement[bool]:
            # the dimensions every container leaves free are held to their domain once, in WHERE
            container = containers[c]
            return and_(
                true(),
                *_box_without(on, container, target, skip),
                *current_domain(on, target, exclude=(everything - free[c]) | common),
                *_flag(on, container, on_links),
            )

        return _labelling(on, list(enumerate(containers)), target, holds)

    def values(on: FromClause) -> list[ColumnElement[Any]]:
        return [micro_units(on.c[field]).label(f"v{n}") for n, field in enumerate(fields)]

    people = (
        select(label(base, base_links).label("_c"), target.person(base).label("_s"), *values(base))
        .select_from(base)
        .where(*current_domain(base, target, exclude=everything - common))
        .subquery("people")
    )
    # fenced (OFFSET 0): PostgreSQL would otherwise copy the container CASE into every use of _c
    near = (
        select(*row.c, label(row, links).label("_c"))
        .select_from(row)
        .where(
            *current_domain(row, target, exclude=everything - common),
            union_condition(row, every_part, links, target),
        )
        .offset(0)
        .subquery("near")
    )
    by_container: list[tuple[ColumnElement[bool], ColumnElement[Any]]] = []
    numbered = [(number, part) for number, (_, part) in enumerate(p for _, pairs in groups for p in pairs)]
    for c, (_, pairs) in enumerate(groups):
        own = numbered[: len(pairs)]
        numbered = numbered[len(pairs) :]
        parts = dict(own)

        def inside(
            number: int, skip: str | None, parts: Mapping[int, CellPredicate] = parts
        ) -> ColumnElement[bool]:
            # inside its container, a part needs only what narrows it (see condition())
            part = parts[number]
            return and_(true(), *_box_without(near, part, target, skip), *_flag(near, part, links))

        by_container.append((near.c._c == _inline(c), _labelling(near, own, target, inside)))
    # fenced as well: _p is tested and then grouped on, and PostgreSQL worked it out for each
    parted = (
        select(near.c._c, case(*by_container).label("_p"), target.person(near).label("_s"), *values(near))
        .offset(0)
        .subquery("parted")
    )
    return people, parted


def _labelling(
    on: FromClause,
    numbered: Sequence[tuple[int, CellPredicate]],
    target: DatasetTable,
    holds: Callable[[int, str | None], ColumnElement[bool]],
) -> ColumnElement[Any]:
    """A CASE giving each row the number of the (disjoint) cell it lies in, NULL in none;
    ``holds(number, skip)`` is a cell's condition, leaving out the axis ``skip`` names.

    When every cell asks one value of some axis (a dimension, or one month), the CASE first tests
    that axis's value and then only the cells asking it: a grid's 60 district x year cells are 20
    equality tests and three ranges instead of up to 60 conditions, on every row."""
    axis = _splitting_axis([cell for _, cell in numbered], target)
    if axis is None:
        return case(*((holds(number, None), number) for number, cell in numbered))
    column = on.c.event_month if axis == MONTHS_AXIS else on.c[axis]
    by_value: dict[str, list[int]] = {}
    for number, cell in numbered:
        by_value.setdefault(_axis_values(cell, target, axis)[0], []).append(number)
    return case(
        *(
            (column == value, case(*((holds(number, axis), number) for number in numbers)))
            for value, numbers in by_value.items()
        )
    )


MONTHS_AXIS = ""  # no dimension has an empty name


def _axis_values(cell: CellPredicate, target: DatasetTable, axis: str) -> Sequence[str]:
    if axis == MONTHS_AXIS:
        return cell.months or ()
    return dict(narrowing(cell.dims, target)).get(axis, ())


def _splitting_axis(cells: Sequence[CellPredicate], target: DatasetTable) -> str | None:
    """The axis on which every cell asks exactly one value, the one with the most values (at
    least two); None when there is none."""
    names = {name for cell in cells for name, _ in cell.dims}
    best: tuple[int, str] | None = None
    for axis in [*sorted(names), MONTHS_AXIS]:
        values = [_axis_values(cell, target, axis) for cell in cells]
        if all(len(v) == 1 for v in values):
            distinct_values = len({v[0] for v in values})
            if distinct_values >= 2 and (best is None or distinct_values > best[0]):
                best = (distinct_values, axis)
    return None if best is None else best[1]


def _box_without(
    on: FromClause, cell: CellPredicate, target: DatasetTable, skip: str | None
) -> list[ColumnElement[bool]]:
    """The cell's box conditions on ``on``, leaving out the axis ``skip`` (a dimension's name, or
    MONTHS_AXIS for the months) when the caller has tested it already."""
    dims = [(name, values) for name, values in narrowing(cell.dims, target) if name != skip]
    return box_conditions(on, dims, None if skip == MONTHS_AXIS else cell.months)


def count_grouped(
    conn: Connection, statement: CompoundSelect[Any], groups: Sequence[PairGroup]
) -> tuple[dict[int, int], dict[CellPredicate, int]]:
    """Per check number of ``groups``: people of its container with no record in its part; and
    per container, its people."""
    people: dict[int, int] = {}
    inside: dict[tuple[int, int], int] = {}
    for c, part, count in conn.execute(statement).all():
        if int(part) < 0:
            people[int(c)] = int(count)
        else:
            inside[int(c), int(part)] = int(count)
    out: dict[int, int] = {}
    number = 0
    for c, (_, pairs) in enumerate(groups):
        for check, _ in pairs:
            out[check] = people.get(c, 0) - inside.get((c, number), 0)
            number += 1
    return out, {container: people.get(c, 0) for c, (container, _) in enumerate(groups)}


def _flag(
    row: FromClause, predicate: CellPredicate, links: Mapping[LinkPredicate, str]
) -> list[ColumnElement[bool]]:
    return [] if predicate.link is None else [row.c[links[predicate.link]] == _inline(1)]


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
    parts = box_conditions(t, narrowing(predicate.dims, target), predicate.months)
    parts += current_domain(t, target, exclude={name for name, _ in predicate.dims})
    if predicate.link is not None:
        parts.append(t.c[links[predicate.link]] == _inline(1))
    return and_(true(), *parts)


def _people(t: FromClause, when: ColumnElement[bool], target: DatasetTable) -> ColumnElement[int]:
    # CASE rather than FILTER, which SQLite has only since 3.30 (the store runs on older ones)
    return func.count(distinct(case((when, target.person(t)))))


def _linked_pairs(
    target: DatasetTable,
    link: LinkPredicate,
    tables: Mapping[str, DatasetTable],
    name: str,
    before: tuple[Table, str] | None = None,
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
    side_rows = select(o.c.subject, o.c.event_day).where(*box_conditions(o, link.dims, link.months))
    if before is not None:  # only the other side's records stored by then (or read by an answer)
        batches, since = before
        ob = batches.alias(f"ob{name}")
        side_rows = side_rows.join_from(o, ob, ob.c.batch_id == o.c.batch_id).where(ob.c.received_at <= since)
    side = side_rows.cte(f"side{name}")
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


def _rows(table: Table, name: str, as_of: AsOf) -> FromClause:
    """``table`` as ``name``; with ``as_of``, only its records of batches stamped by then."""
    if as_of is None:
        return table.alias(name)
    batches, watermark = as_of
    b = batches.alias(f"{name}_batches")
    read = select(b.c.batch_id).where(b.c.received_at <= watermark)
    return select(table).where(table.c.batch_id.in_(read)).subquery(name)


def _inline(value: int) -> ColumnElement[int]:
    return literal_column(str(int(value)))
