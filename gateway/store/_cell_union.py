"""The union of released cells as a few boxes, for the release ledger's counts.

A differencing check counts the people of a container outside the union of its parts, and its
parts are mostly the cells of a grid released before: a district x month grid is 720 of them.
Written as 720 ORed cell conditions, each carrying the IN lists of every dimension it leaves
free, the union cost PostgreSQL thousands of comparisons per row: at 1M rows, a linked question
asked after such a grid spent 5.8 s in its counts and 47 s in its sums (gateway/store/_ledger.py).

Each cell is a box: per dimension a set of values (a free dimension is held to its current
domain, as the aggregate holds it, or is any value when it has no domain), a set of months (or
any month), and the link it needs. Two boxes that agree on everything but one axis are one box
with that axis's sets joined: (A and x in S) or (A and x in T) is A and x in S+T. Merged until no
two agree so, a grid's cells become one box, and the union selects exactly the rows it did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, FromClause, and_, literal_column, or_, true

from gateway.disclosure._grid import month_keys
from gateway.disclosure._ledger import CellPredicate, LinkPredicate
from gateway.store._schema import DatasetTable

Values = frozenset[str] | None
"""The values a box allows on one axis; None: any value (no condition)."""


@dataclass(frozen=True)
class Box:
    """One cell, or a union of cells that differ on one axis at a time."""

    link: LinkPredicate | None
    axes: tuple[Values, ...]  # per dimension name of the union (in its order), then the months


def union_condition(
    row: FromClause,
    predicates: Sequence[CellPredicate],
    links: Mapping[LinkPredicate, str],
    target: DatasetTable,
) -> ColumnElement[bool]:
    """The rows of ``row`` in any of ``predicates``: what ``or_(*(condition(row, p, ...)))``
    selects (gateway/store/_ledger.py), written as few boxes."""
    names = _names(predicates, target)
    boxes = merge_boxes([box_of(p, names, target) for p in predicates])
    if target.rows_in_domain:  # cells joined into a whole domain (a grid's districts) are free on it
        boxes = merge_boxes([_free_whole_domains(box, names, target) for box in boxes])
    return or_(*(_render(row, box, names, links) for box in boxes))


def box_of(predicate: CellPredicate, names: Sequence[str], target: DatasetTable) -> Box:
    """``predicate`` as a box over the dimensions ``names`` (then the months)."""
    constrained = dict(narrowing(predicate.dims, target))
    domains = {d.name: d.domain for d in target.dataset.dimensions}
    axes: list[Values] = []
    for name in names:
        if name in constrained:
            axes.append(frozenset(constrained[name]))
        else:
            domain = None if target.rows_in_domain else domains.get(name)
            axes.append(frozenset(domain) if domain else None)
    axes.append(None if predicate.months is None else frozenset(predicate.months))
    return Box(predicate.link, tuple(axes))


def narrowing(
    dims: Sequence[tuple[str, Sequence[str]]], target: DatasetTable
) -> list[tuple[str, Sequence[str]]]:
    """``dims`` without those allowing a dimension's whole current domain, when every stored row
    is known to be in the domains (DatasetTable.rows_in_domain): they select every row then. A
    grid's released cells merge into such a box (every district, every month), and each IN
    list cost a comparison per value per row: at 1M rows, a check's statements read the table
    at a fifth of the speed for lists that held everywhere."""
    if not target.rows_in_domain:
        return list(dims)
    return [(name, values) for name, values in dims if not _whole_domain(target, name, values)]


def _free_whole_domains(box: Box, names: Sequence[str], target: DatasetTable) -> Box:
    axes = [
        None if values is not None and _whole_domain(target, name, values) else values
        for name, values in zip(names, box.axes[:-1], strict=True)
    ]
    return Box(box.link, (*axes, box.axes[-1]))


def _whole_domain(target: DatasetTable, name: str, values: Iterable[str]) -> bool:
    """Whether ``values`` hold every value of the dimension's current domain (never for a
    dimension without one)."""
    domain = next((d.domain for d in target.dataset.dimensions if d.name == name), ())
    return bool(domain) and set(domain) <= set(values)


def merge_boxes(boxes: Sequence[Box]) -> list[Box]:
    """The same union as ``boxes``, with every two boxes that differ on one axis only joined."""
    out = list(dict.fromkeys(boxes))
    axes = len(out[0].axes) if out else 0
    merged = True
    while merged:
        merged = False
        for axis in range(axes):
            groups: dict[tuple[LinkPredicate | None, tuple[Values, ...]], list[Box]] = {}
            for box in out:
                rest = box.axes[:axis] + box.axes[axis + 1 :]
                groups.setdefault((box.link, rest), []).append(box)
            if len(groups) < len(out):
                out = [_joined(group, axis) for group in groups.values()]
                merged = True
    return out


def _joined(group: list[Box], axis: int) -> Box:
    if len(group) == 1:
        return group[0]
    sets = [box.axes[axis] for box in group]
    values: Values = None if None in sets else frozenset().union(*(s for s in sets if s is not None))
    first = group[0]
    return Box(first.link, (*first.axes[:axis], values, *first.axes[axis + 1 :]))


def _names(predicates: Sequence[CellPredicate], target: DatasetTable) -> list[str]:
    names = [d.name for d in target.dataset.dimensions]
    extra = sorted({name for p in predicates for name, _ in p.dims} - set(names))
    return names + extra


def _render(
    row: FromClause, box: Box, names: Sequence[str], links: Mapping[LinkPredicate, str]
) -> ColumnElement[bool]:
    dims = [
        (name, sorted(values))
        for name, values in zip(names, box.axes[:-1], strict=True)
        if values is not None
    ]
    months = box.axes[-1]
    parts = box_conditions(row, dims, None if months is None else sorted(months))
    if box.link is not None:
        parts.append(row.c[links[box.link]] == literal_column("1"))
    return and_(true(), *parts)


def box_conditions(
    t: FromClause, dims: Sequence[tuple[str, Sequence[str]]], months: Sequence[str] | None
) -> list[ColumnElement[bool]]:
    """The conditions of a box on ``t``: each dimension to its values, the months (None: any
    month; none at all: no record) as runs of consecutive months."""
    parts: list[ColumnElement[bool]] = [t.c[name].in_(list(values)) for name, values in dims]
    if months is not None:
        ranges = [t.c.event_month.between(first, last) for first, last in month_runs(months)]
        parts.append(or_(*ranges) if ranges else literal_column("1") == literal_column("0"))
    return parts


def month_runs(months: frozenset[str] | Sequence[str]) -> list[tuple[str, str]]:
    """Sorted months as inclusive runs of consecutive months: fewer, index-friendly ranges."""
    runs: list[tuple[str, str]] = []
    for month in sorted(months):
        if runs and month_keys(runs[-1][1], month)[1:] == (month,):
            runs[-1] = (runs[-1][0], month)
        else:
            runs.append((month, month))
    return runs
