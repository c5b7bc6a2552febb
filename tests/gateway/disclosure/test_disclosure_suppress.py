"""apply_disclosure and suppress: primary and secondary suppression, and the shape of a release."""

from __future__ import annotations

import dataclasses

import pytest
from raw_cells import spread

from gateway.catalogue import Catalogue
from gateway.disclosure import Relation, Released, ReleasedValue, apply_disclosure, build_grid, suppress
from gateway.errors import GatewayError, InvalidRequest
from gateway.query import MeasureRef, QuerySpec, RawCell, RawResult

K, ROUND = 10, 5
MEASURES = (MeasureRef("subjects"), MeasureRef("records"), MeasureRef("sum", "cost"))
BY_DISTRICT = QuerySpec("ed_visits", MEASURES, ("district",))
WITHHELD = (ReleasedValue(withheld=True, value=0.0),) * len(MEASURES)


def table(cells: dict[str, tuple[int, int]], total_subjects: int | None = None) -> RawResult:
    """Cells by district as (subjects, records), each record costing 10; disjoint subjects."""
    raw = tuple(
        RawCell((d,), s, r, {"cost": 10.0 * r}, spread({"cost": 10.0 * r}, s)) for d, (s, r) in cells.items()
    )
    subjects = sum(s for s, _ in cells.values()) if total_subjects is None else total_subjects
    records = sum(r for _, r in cells.values())
    return RawResult(
        raw,
        RawCell((), subjects, records, {"cost": 10.0 * records}, spread({"cost": 10.0 * records}, subjects)),
    )


def release(catalogue: Catalogue, raw: RawResult, spec: QuerySpec = BY_DISTRICT) -> Released:
    grid = build_grid(spec, catalogue, max_cells=1000)
    return apply_disclosure(spec, raw, grid, k=K, round_to=ROUND)


def withheld_keys(released: Released) -> list[str]:
    return [c.key[0] for c in released.cells if c.values[0].withheld]


def test_nine_subjects_in_thirty_records_is_withheld(catalogue: Catalogue) -> None:
    """A cell of 9 distinct subjects is withheld, however many records they hold."""
    released = release(catalogue, table({"D01": (9, 30), "D02": (50, 60), "D03": (40, 45)}))
    assert released.cells[0].values == WITHHELD


def test_exactly_k_subjects_is_released(catalogue: Catalogue) -> None:
    """A cell of exactly k distinct subjects is released, rounded."""
    released = release(catalogue, table({"D01": (10, 12), "D02": (50, 60), "D03": (40, 45)}))
    assert released.cells[0].values == (
        ReleasedValue(False, 10.0),
        ReleasedValue(False, 10.0),
        ReleasedValue(False, 120.0),
    )
    assert released.cells_withheld == 0


def test_one_small_cell_pulls_a_second_with_the_total_released(catalogue: Catalogue) -> None:
    """With the total released, a lone small cell brings the smallest released cell down with it."""
    raw = table({"D01": (3, 4), "D02": (40, 41), "D03": (25, 30)})
    released = release(catalogue, raw)
    assert withheld_keys(released) == ["D01", "D03"]
    assert not released.total.values[0].withheld
    assert sum(c.subjects for c in raw.cells if c.key[0] in withheld_keys(released)) >= K
    assert (released.cells_withheld, released.cells_released) == (2, 1)


def test_secondary_ties_go_to_grid_order(catalogue: Catalogue) -> None:
    """Of two equally small released cells, the earlier in grid order is withheld."""
    released = release(catalogue, table({"D01": (20, 20), "D02": (20, 20), "D03": (2, 2)}))
    assert withheld_keys(released) == ["D01", "D03"]


def test_two_small_cells_under_k_together_pull_a_third(catalogue: Catalogue) -> None:
    """Two withheld cells holding fewer than k subjects between them are not enough."""
    spec = QuerySpec("ed_visits", MEASURES, ("district", "sex"), (("district", ("D01", "D02")),))
    cells = {("D01", "F"): 2, ("D01", "M"): 3, ("D01", "X"): 30, ("D02", "F"): 12, ("D02", "M"): 11}
    raw = RawResult(
        tuple(RawCell(key, s, s, {"cost": 1.0}, spread({"cost": 1.0}, s)) for key, s in cells.items()),
        RawCell((), sum(cells.values()), sum(cells.values()), {"cost": 5.0}, spread({"cost": 5.0}, 58)),
    )
    released = release(catalogue, raw, spec)
    withheld = {c.key for c in released.cells if c.values[0].withheld}
    # D02-X is empty (withheld, 0 subjects); 2 + 3 + 0 < k, so the smallest released (D02-M) goes.
    assert withheld == {("D01", "F"), ("D01", "M"), ("D02", "X"), ("D02", "M")}
    assert not released.total.values[0].withheld


def test_all_cells_small_but_total_large(catalogue: Catalogue) -> None:
    """Every cell under k while the total is k or more: all cells withheld, the total released."""
    released = release(catalogue, table({"D01": (4, 4), "D02": (3, 3), "D03": (4, 5)}))
    assert released.cells_released == 0
    assert released.total.values == (
        ReleasedValue(False, 10.0),
        ReleasedValue(False, 10.0),
        ReleasedValue(False, 120.0),
    )


def test_small_total_is_withheld(catalogue: Catalogue) -> None:
    """A total under k is withheld along with every cell."""
    released = release(catalogue, table({"D01": (4, 4), "D02": (3, 3)}))
    assert released.total.values == WITHHELD
    assert released.cells_withheld == 3


def test_total_withheld_when_no_cells_can_protect_it() -> None:
    """When no released part can cover a lone withheld part, the total is withheld instead."""
    assert suppress([3, 12], [Relation(total=1, parts=(0,))], k=K) == {0, 1}


def test_withheld_margin_is_protected_within_the_grand_total() -> None:
    """A total withheld in one relation is a part of the next and gets a companion there too."""
    # Cells a=0, b=1, margin M=2 over (a, b), grand total G=3 over (M, c), c=4.
    relations = [Relation(total=2, parts=(0, 1)), Relation(total=3, parts=(2, 4))]
    assert suppress([3, 4, 7, 54, 47], relations, k=K) == {0, 1, 2, 4}


def test_two_by_two_with_margins_loses_all_four_cells() -> None:
    """With row and column margins released, one small cell of a 2x2 table withholds all four."""
    # Cells 0..3 are r0c0, r0c1, r1c0, r1c1; 4, 5 row margins; 6, 7 column margins; 8 the total.
    relations = [
        Relation(4, (0, 1)),
        Relation(5, (2, 3)),
        Relation(6, (0, 2)),
        Relation(7, (1, 3)),
        Relation(8, (4, 5)),
    ]
    assert suppress([3, 20, 30, 40, 23, 70, 33, 60, 93], relations, k=K) == {0, 1, 2, 3}


def test_empty_cell_is_withheld_like_a_small_one(catalogue: Catalogue) -> None:
    """A grid cell with no data is withheld, and released exactly as a small cell would be."""
    empty = release(catalogue, table({"D02": (40, 41), "D03": (25, 30)}))
    small = release(catalogue, table({"D01": (3, 4), "D02": (40, 41), "D03": (25, 30)}))
    assert empty.cells[0] == small.cells[0]
    assert empty.cells[0].values == WITHHELD


def test_shape_is_the_same_whatever_the_small_cell_holds(catalogue: Catalogue) -> None:
    """Two tables differing only in a small cell give the same keys, order, count and markers."""
    first = release(catalogue, table({"D01": (1, 1), "D02": (40, 41), "D03": (25, 30)}))
    second = release(catalogue, table({"D01": (9, 70), "D02": (40, 41), "D03": (25, 30)}))
    assert [c.key for c in first.cells] == [c.key for c in second.cells] == [("D01",), ("D02",), ("D03",)]
    assert [[v.withheld for v in c.values] for c in first.cells] == [
        [v.withheld for v in c.values] for c in second.cells
    ]
    assert first.cells[0] == second.cells[0]
    assert first.cells_withheld == second.cells_withheld


def test_ungrouped_query_releases_the_total_as_its_one_cell(catalogue: Catalogue) -> None:
    """Without group_by the single cell is the whole table, even when the store sent no cell row."""
    spec = QuerySpec("ed_visits", MEASURES, ())
    raw = RawResult((), RawCell((), 42, 50, {"cost": 500.0}, spread({"cost": 500.0}, 42)))
    released = release(catalogue, raw, spec)
    assert released.cells[0].key == ()
    assert released.cells[0].values == released.total.values
    assert released.total.values[1] == ReleasedValue(False, 50.0)


def test_group_outside_grid_is_an_internal_error(catalogue: Catalogue) -> None:
    """A raw group the grid does not hold is a GatewayError, never dropped or released."""
    spec = QuerySpec("ed_visits", MEASURES, ("district",), (("district", ("D01", "D02")),))
    with pytest.raises(GatewayError) as caught:
        release(catalogue, table({"D01": (40, 40), "D02": (40, 40), "D03": (40, 40)}), spec)
    assert not isinstance(caught.value, InvalidRequest)
    assert "D03" not in caught.value.message


def test_group_with_a_key_of_wrong_length_is_an_internal_error(catalogue: Catalogue) -> None:
    """A raw key with more parts than group_by is not matched loosely."""
    one = RawCell(("D01", "F"), 40, 40, {"cost": 1.0}, spread({"cost": 1.0}, 40))
    raw = RawResult((one,), dataclasses.replace(one, key=()))
    with pytest.raises(GatewayError):
        release(catalogue, raw)


def test_group_twice_is_an_internal_error(catalogue: Catalogue) -> None:
    """The same group twice in a raw result is a GatewayError."""
    cell = RawCell(("D01",), 40, 40, {"cost": 1.0}, spread({"cost": 1.0}, 40))
    with pytest.raises(GatewayError):
        release(
            catalogue, RawResult((cell, cell), RawCell((), 80, 80, {"cost": 2.0}, spread({"cost": 2.0}, 80)))
        )


def test_missing_sum_is_an_internal_error(catalogue: Catalogue) -> None:
    """A released cell whose raw sums lack a requested measure is a GatewayError, not a zero."""
    raw = RawResult(
        (RawCell(("D01",), 40, 40, {}, {"cost": 0.0}),), RawCell((), 40, 40, {"cost": 1.0}, {"cost": 0.05})
    )
    spec = QuerySpec("ed_visits", MEASURES, ("district",), (("district", ("D01",)),))
    with pytest.raises(GatewayError):
        release(catalogue, raw, spec)


@pytest.mark.parametrize(("k", "round_to"), [(0, 5), (10, 0), (-1, 5)])
def test_non_positive_thresholds_are_refused(catalogue: Catalogue, k: int, round_to: int) -> None:
    """k or a rounding base under 1 is refused rather than releasing unprotected cells."""
    grid = build_grid(BY_DISTRICT, catalogue, max_cells=10)
    with pytest.raises(GatewayError):
        apply_disclosure(BY_DISTRICT, table({"D01": (40, 40)}), grid, k=k, round_to=round_to)
