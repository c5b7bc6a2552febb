"""Applying disclosure control to a raw result: what may leave the gateway, cell by cell.

Pure: the same spec, raw result, grid and thresholds always give the same release. Every grid
cell appears once, in grid order, whether the data held it or not; a withheld value is a bare
marker with the value 0, the same for a cell withheld as small, one that held nobody, and a sum
withheld as dominated (DESIGN §9.7). Counts are withheld per cell; the sum and mean of a measure
may be withheld on their own (the dominance rule), the cell's counts still released. Under
``show_zeros`` a cell that held nobody is released as zeros (its mean, of no records, withheld).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.disclosure._dominance import DEFAULT_DOMINANCE, Dominance, protect_sums
from gateway.disclosure._grid import Grid, GridKey
from gateway.disclosure._noise import Noise, noisy_value
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


def apply_disclosure(
    spec: QuerySpec,
    raw: RawResult,
    grid: Grid,
    *,
    k: int,
    round_to: int,
    dominance: Dominance = DEFAULT_DOMINANCE,
    show_zeros: bool = False,
    noise: Noise | None = None,
) -> Released:
    """Primary and secondary suppression on distinct subjects, the dominance rule and its
    secondary suppression for each summed measure, then (with ``noise``) the agreement's noise,
    then rounding (DESIGN §9). What to withhold is decided on the true figures, before noise."""
    if k < 1 or round_to < 1:
        raise GatewayError("disclosure thresholds must be positive whole numbers")
    found = _cells_by_key(spec, raw, grid)
    cells = [found.get(key) for key in grid]
    # Numbering for suppress(): grid cells 0..n-1 in grid order, then the grand total as n.
    # Margins, when they come, are further numbers and further relations.
    n = len(grid)
    everything = [*cells, raw.total]
    relations = [Relation(total=n, parts=tuple(range(n)))]
    subjects = [cell.subjects if cell is not None else 0 for cell in everything]
    withheld = suppress(subjects, relations, k=k, show_zeros=show_zeros)
    sums_withheld = {
        f: protect_sums(
            [cell.sums.get(f, 0.0) if cell is not None else 0.0 for cell in everything],
            [_top(cell, f) for cell in everything],
            withheld,
            relations,
            percent=dominance.percent,
        )
        for f in spec.sum_fields
    }

    def release(i: int, key: GridKey, cell: RawCell | None) -> ReleasedCell:
        values = tuple(
            _release_value(m, cell, i in withheld, i in sums_withheld.get(m.field, ()), round_to)
            if noise is None or cell is None or i in withheld
            else _noisy_release(
                noise, spec, m, cell, sum_withheld=i in sums_withheld.get(m.field, ()), round_to=round_to
            )
            for m in spec.measures
        )
        return ReleasedCell(key, values)

    released = tuple(release(i, key, cell) for i, (key, cell) in enumerate(zip(grid, cells, strict=True)))
    total = release(n, (), raw.total)
    cells_withheld = sum(1 for cell in released if any(v.withheld for v in cell.values))
    return Released(
        cells=released, total=total, cells_withheld=cells_withheld, cells_released=n - cells_withheld
    )


def _top(cell: RawCell | None, field: str) -> float:
    if cell is None:
        return 0.0
    if field not in cell.tops:
        # no top contributions, no dominance check: nothing of the measure may leave
        raise GatewayError("the raw result lacks the top contributions the dominance rule needs")
    return cell.tops[field]


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


_WITHHELD = ReleasedValue(withheld=True, value=0.0)


def _release_value(
    measure: MeasureRef, cell: RawCell | None, withheld: bool, sum_withheld: bool, round_to: int
) -> ReleasedValue:
    if withheld:
        return _WITHHELD
    if measure.kind in ("sum", "mean") and sum_withheld:
        return _WITHHELD
    if cell is None:
        # a cell that held nobody, released only under show_zeros; its mean does not exist
        return _WITHHELD if measure.kind == "mean" else ReleasedValue(False, 0.0)
    if measure.kind == "mean" and cell.records == 0:
        return _WITHHELD
    return ReleasedValue(False, _value(measure, cell, round_to))


def _noisy_release(
    noise: Noise, spec: QuerySpec, measure: MeasureRef, cell: RawCell, *, sum_withheld: bool, round_to: int
) -> ReleasedValue:
    if measure.kind in ("sum", "mean") and sum_withheld:
        return _WITHHELD
    value = noisy_value(noise, spec, measure, cell)
    if value is None:  # a mean over noisy records below one
        return _WITHHELD
    if measure.kind == "mean":
        return ReleasedValue(False, round_mean(value, 1))
    return ReleasedValue(False, round_to_base(value, round_to))


def _value(measure: MeasureRef, cell: RawCell, round_to: int) -> float:
    if measure.kind == "subjects":
        return round_to_base(cell.subjects, round_to)
    if measure.kind == "records":
        return round_to_base(cell.records, round_to)
    if measure.field not in cell.sums:
        raise GatewayError("the raw result lacks a sum the query needs")
    total = round_to_base(cell.sums[measure.field], round_to)
    if measure.kind == "sum":
        return total
    # From the released (rounded) sum and record count, not the true ones: a mean to one decimal
    # of the true figures would pin the sum to within 0.05 x records, undoing its rounding.
    # Records >= subjects >= k here, and k >= round_to / 2 under the consortium's floors, so the
    # rounded count is never 0; if it were, the mean is the rounded sum's over one base.
    return round_mean(total, max(int(round_to_base(cell.records, round_to)), round_to))
