"""Applying disclosure control to a raw result: what may leave the gateway, cell by cell.

Pure: the same spec, raw result, grid and thresholds always give the same release. Every grid
cell appears once, in grid order, whether the data held it or not; a withheld value is a bare
marker with the value 0, the same for a cell withheld as small and one that held nobody.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.disclosure._grid import Grid, GridKey
from gateway.disclosure._round import round_mean, round_to_base
from gateway.disclosure._suppress import Relation, suppress
from gateway.errors import GatewayError
from gateway.query import MeasureRef, QuerySpec, RawCell, RawResult


@dataclass(frozen=True)
class ReleasedValue:
    withheld: bool
    value: float  # 0.0 when withheld


@dataclass(frozen=True)
class ReleasedCell:
    key: GridKey
    values: tuple[ReleasedValue, ...]  # one per measure of the spec, in order


@dataclass(frozen=True)
class Released:
    cells: tuple[ReleasedCell, ...]  # every grid cell, in grid order
    total: ReleasedCell  # key ()
    cells_withheld: int  # grid cells only; the total is not counted
    cells_released: int


def apply_disclosure(spec: QuerySpec, raw: RawResult, grid: Grid, *, k: int, round_to: int) -> Released:
    """Primary and secondary suppression on distinct subjects, then rounding (DESIGN §9)."""
    if k < 1 or round_to < 1:
        raise GatewayError("disclosure thresholds must be positive whole numbers")
    found = _cells_by_key(spec, raw, grid)
    cells = [found.get(key) for key in grid]
    # Numbering for suppress(): grid cells 0..n-1 in grid order, then the grand total as n.
    # Margins, when they come, are further numbers and further relations.
    n = len(grid)
    subjects = [cell.subjects if cell is not None else 0 for cell in cells] + [raw.total.subjects]
    withheld = suppress(subjects, [Relation(total=n, parts=tuple(range(n)))], k=k)
    released = tuple(
        _release(key, cell, spec.measures, i in withheld, round_to)
        for i, (key, cell) in enumerate(zip(grid, cells, strict=True))
    )
    total = _release((), raw.total, spec.measures, n in withheld, round_to)
    cells_withheld = sum(1 for i in range(n) if i in withheld)
    return Released(
        cells=released, total=total, cells_withheld=cells_withheld, cells_released=n - cells_withheld
    )


def _cells_by_key(spec: QuerySpec, raw: RawResult, grid: Grid) -> Mapping[GridKey, RawCell]:
    keys = set(grid)
    found: dict[GridKey, RawCell] = {}
    for cell in raw.cells:
        key = tuple(cell.key)
        # A group outside the grid means the SQL and the grid disagree: a bug to stop on, since
        # dropping it would skew the total's complement and releasing it would break the shape.
        if key not in keys:
            raise GatewayError("the raw result holds a group outside the requested grid")
        if key in found:
            raise GatewayError("the raw result holds a group twice")
        found[key] = cell
    if not spec.group_by and () not in found:
        # Without grouping, the one cell is the whole filtered table.
        found[()] = raw.total
    return found


def _release(
    key: GridKey, cell: RawCell | None, measures: tuple[MeasureRef, ...], withheld: bool, round_to: int
) -> ReleasedCell:
    if withheld or cell is None:
        # cell is None only for an empty grid cell, which suppress() always withholds (k >= 1).
        return ReleasedCell(key, tuple(ReleasedValue(withheld=True, value=0.0) for _ in measures))
    return ReleasedCell(key, tuple(ReleasedValue(False, _value(m, cell, round_to)) for m in measures))


def _value(measure: MeasureRef, cell: RawCell, round_to: int) -> float:
    if measure.kind == "subjects":
        return round_to_base(cell.subjects, round_to)
    if measure.kind == "records":
        return round_to_base(cell.records, round_to)
    if measure.field not in cell.sums:
        raise GatewayError("the raw result lacks a sum the query needs")
    if measure.kind == "sum":
        return round_to_base(cell.sums[measure.field], round_to)
    return round_mean(cell.sums[measure.field], cell.records)
