"""Each withheld cell of an answer is counted under the rule that withheld it, for the
``datashare_cells_withheld`` metric: primary, secondary, dominance, ledger, no_records."""

from __future__ import annotations

import dataclasses

from gateway.catalogue import Catalogue
from gateway.disclosure import Dominance, Released, apply_disclosure, build_grid
from gateway.query import MeasureRef, QuerySpec, RawCell, RawResult
from gateway.server._cells import withheld_by_reason

SUBJECTS = (MeasureRef("subjects"),)
WITH_COST = (MeasureRef("subjects"), MeasureRef("sum", "cost"), MeasureRef("mean", "cost"))


def cell(key: str, subjects: int, cost: float = 0.0, top: float | None = None) -> RawCell:
    even = cost * min(1.0, 2 / subjects) if subjects else 0.0
    return RawCell(
        (key,) if key else (), subjects, subjects, {"cost": cost}, {"cost": even if top is None else top}
    )


def reasons(
    catalogue: Catalogue,
    measures: tuple[MeasureRef, ...],
    raw: RawResult,
    *,
    show_zeros: bool = False,
    ledger_small: str = "",
) -> dict[str, int]:
    spec = QuerySpec("ed_visits", measures, ("district",))
    grid = build_grid(spec, catalogue, max_cells=100)

    def disclose(r: RawResult) -> Released:
        return apply_disclosure(
            spec, r, grid, k=10, round_to=5, dominance=Dominance(2, 85), show_zeros=show_zeros
        )

    suppressed = disclose(raw)
    final = suppressed
    if ledger_small:  # as the release ledger does: the cell re-enters suppression as one subject
        cells = tuple(
            dataclasses.replace(c, subjects=1) if c.key == (ledger_small,) else c for c in raw.cells
        )
        final = disclose(dataclasses.replace(raw, cells=cells))
    counted = withheld_by_reason(spec, raw, grid, suppressed, final, k=10, show_zeros=show_zeros)
    assert sum(counted.values()) == final.cells_withheld
    return dict(counted)


def test_a_small_cell_is_primary_and_its_protector_secondary(catalogue: Catalogue) -> None:
    """D03 with 3 people is withheld as primary; D01, the smallest other, is withheld with it as secondary."""
    raw = RawResult((cell("D01", 12), cell("D02", 15), cell("D03", 3)), cell("", 30))
    assert reasons(catalogue, SUBJECTS, raw) == {"primary": 1, "secondary": 1}


def test_empty_cells_are_primary_unless_zeros_are_shown(catalogue: Catalogue) -> None:
    """A district with nobody counts as primary; under zeros: show its counts are released and only its mean, which does not exist, is withheld (no_records)."""
    raw = RawResult((cell("D01", 30, 300.0), cell("D02", 40, 400.0)), cell("", 70, 700.0))
    assert reasons(catalogue, SUBJECTS, raw) == {"primary": 1, "secondary": 1}
    assert reasons(catalogue, WITH_COST, raw, show_zeros=True) == {"no_records": 1}


def test_a_dominated_sum_counts_as_dominance(catalogue: Catalogue) -> None:
    """A district whose cost one person dominates, and the one withheld with it, count as dominance: their people counts are released."""
    raw = RawResult(
        (cell("D01", 30, 4290.0, top=4010.0), cell("D02", 40, 400.0), cell("D03", 50, 5000.0)),
        cell("", 120, 9690.0, top=4010.0),
    )
    assert reasons(catalogue, WITH_COST, raw) == {"dominance": 2}


def test_a_cell_only_the_ledger_withheld_counts_as_ledger(catalogue: Catalogue) -> None:
    """D02, released by suppression but withheld by the release ledger, counts as ledger; the others keep their own reasons."""
    raw = RawResult((cell("D01", 12), cell("D02", 15), cell("D03", 3)), cell("", 30))
    assert reasons(catalogue, SUBJECTS, raw, ledger_small="D02") == {
        "primary": 1,
        "secondary": 1,
        "ledger": 1,
    }
