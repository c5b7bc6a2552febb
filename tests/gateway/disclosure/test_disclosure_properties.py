"""Properties of apply_disclosure over random tables: what may never be released."""

from __future__ import annotations

import dataclasses
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.catalogue import Catalogue
from gateway.disclosure import Grid, Released, apply_disclosure, build_grid
from gateway.query import MeasureRef, QuerySpec, RawCell, RawResult

MEASURES = (
    MeasureRef("subjects"),
    MeasureRef("records"),
    MeasureRef("sum", "cost"),
    MeasureRef("mean", "cost"),
)
GROUPINGS = [(), ("sex",), ("district",), ("district", "sex"), ("age_band", "district", "sex")]


@dataclasses.dataclass(frozen=True)
class Case:
    spec: QuerySpec
    grid: Grid
    raw: RawResult
    k: int
    round_to: int

    def release(self, raw: RawResult | None = None) -> Released:
        return apply_disclosure(
            self.spec, self.raw if raw is None else raw, self.grid, k=self.k, round_to=self.round_to
        )

    def raw_cell(self, key: tuple[str, ...]) -> RawCell | None:
        if not self.spec.group_by:
            return self.raw.total
        return next((c for c in self.raw.cells if c.key == key), None)


@st.composite
def cases(draw: st.DrawFn, catalogue: Catalogue) -> Case:
    spec = QuerySpec("ed_visits", MEASURES, draw(st.sampled_from(GROUPINGS)))
    grid = build_grid(spec, catalogue, max_cells=1000)
    cells = []
    for key in grid if spec.group_by else ():
        if draw(st.integers(0, 3)) == 0:
            continue  # a group with no records: the store returns nothing for it
        subjects = draw(st.integers(1, 25))
        records = subjects + draw(st.integers(0, 15))
        cost = draw(st.floats(0, 5000)) * records
        # top contributions of 0: nobody dominates, so these properties are about counts alone
        # (dominance has its own, in test_disclosure_dominance.py)
        cells.append(RawCell(key, subjects, records, {"cost": cost}, {"cost": 0.0}))
    if spec.group_by:
        # People may fall in several cells: the total's distinct count lies between the largest
        # cell and the sum of all cells.
        largest = max((c.subjects for c in cells), default=0)
        subjects = draw(st.integers(largest, sum(c.subjects for c in cells)))
        total = RawCell(
            (),
            subjects,
            sum(c.records for c in cells),
            {"cost": math.fsum(c.sums["cost"] for c in cells)},
            {"cost": 0.0},
        )
    else:
        subjects = draw(st.integers(0, 40))
        records = subjects + draw(st.integers(0, 15)) if subjects else 0
        total = RawCell((), subjects, records, {"cost": 3.0 * records}, {"cost": 0.0})
    return Case(
        spec,
        grid,
        RawResult(tuple(cells), total),
        draw(st.integers(1, 15)),
        draw(st.sampled_from([1, 2, 5, 10])),
    )


def _subjects(case: Case, key: tuple[str, ...]) -> int:
    cell = case.raw_cell(key)
    return cell.subjects if cell is not None else 0


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_no_released_cell_has_fewer_than_k_subjects(catalogue: Catalogue, data: st.DataObject) -> None:
    """Every released cell, and a released total, holds at least k distinct subjects."""
    case = data.draw(cases(catalogue))
    released = case.release()
    for cell in released.cells:
        if not cell.values[0].withheld:
            assert _subjects(case, cell.key) >= case.k
    if not released.total.values[0].withheld:
        assert case.raw.total.subjects >= case.k


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_total_minus_released_cells_never_pins_a_withheld_cell(
    catalogue: Catalogue, data: st.DataObject
) -> None:
    """With the total released, records(total) - records(released) covers 2+ cells of k+ subjects."""
    case = data.draw(cases(catalogue))
    released = case.release()
    withheld = [c.key for c in released.cells if c.values[0].withheld]
    if len(withheld) == 1:
        assert released.total.values[0].withheld
    if withheld and not released.total.values[0].withheld:
        released_keys = [c.key for c in released.cells if not c.values[0].withheld]
        difference = case.raw.total.records - sum(
            cell.records for key in released_keys if (cell := case.raw_cell(key)) is not None
        )
        hidden = [cell for key in withheld if (cell := case.raw_cell(key)) is not None]
        # The difference is exactly the withheld group's records, and that group is no small one.
        assert difference == sum(c.records for c in hidden)
        assert len(withheld) >= 2
        assert sum(c.subjects for c in hidden) >= case.k


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_withheld_cells_do_not_shape_any_released_value(catalogue: Catalogue, data: st.DataObject) -> None:
    """Changing withheld cells' records and sums changes nothing released."""
    case = data.draw(cases(catalogue))
    released = case.release()
    withheld = {c.key for c in released.cells if c.values[0].withheld}
    altered = []
    for raw in case.raw.cells:
        if raw.key not in withheld:
            altered.append(raw)
        else:
            # Subjects stay: which cells are withheld is decided on them, and that is the point.
            bump = data.draw(st.integers(0, 500))
            cost = data.draw(st.floats(0, 1e6))
            altered.append(dataclasses.replace(raw, records=raw.records + bump, sums={"cost": cost}))
    assert case.release(RawResult(tuple(altered), case.raw.total)) == released
    for cell in released.cells:
        if cell.key in withheld:
            assert all(v.withheld and v.value == 0.0 for v in cell.values)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_shape_and_values_follow_the_grid(catalogue: Catalogue, data: st.DataObject) -> None:
    """Keys are the grid in order; released values are their own cell's figures, rounded."""
    case = data.draw(cases(catalogue))
    released = case.release()
    assert [c.key for c in released.cells] == list(case.grid)
    assert released.cells_withheld + released.cells_released == len(case.grid)
    assert released.cells_withheld == sum(1 for c in released.cells if c.values[0].withheld)
    for cell in released.cells:
        assert len(cell.values) == len(MEASURES)
        assert len({v.withheld for v in cell.values}) == 1  # a cell is released or withheld whole
        raw = case.raw_cell(cell.key)
        if cell.values[0].withheld or raw is None:
            continue
        subjects, records, total_cost, mean_cost = (v.value for v in cell.values)
        half = case.round_to / 2
        assert abs(subjects - raw.subjects) <= half
        assert abs(records - raw.records) <= half
        assert abs(total_cost - raw.sums["cost"]) <= half + 1e-6
        assert subjects % case.round_to == records % case.round_to == 0
        # from the released figures only: nothing finer about the raw sum leaks through it
        assert abs(mean_cost - total_cost / max(records, case.round_to)) <= 0.05 + 1e-9
