"""The (n,k) dominance rule for sums and means, its secondary suppression against the total, and
the agreement's choice between withholding and showing empty cells (DESIGN §9.4, §9.7)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from raw_cells import spread

from gateway.catalogue import Catalogue
from gateway.disclosure import (
    Dominance,
    Relation,
    Released,
    ReleasedValue,
    apply_disclosure,
    build_grid,
    dominated,
    protect_sums,
)
from gateway.errors import GatewayError
from gateway.query import MeasureRef, QuerySpec, RawCell, RawResult

MEASURES = (MeasureRef("subjects"), MeasureRef("sum", "cost"), MeasureRef("mean", "cost"))
BY_DISTRICT = QuerySpec("ed_visits", MEASURES, ("district",))
WITHHELD = ReleasedValue(withheld=True, value=0.0)
TOTAL = Relation(total=3, parts=(0, 1, 2))


def release(
    catalogue: Catalogue, cells: list[RawCell], total: RawCell, *, show_zeros: bool = False
) -> Released:
    grid = build_grid(BY_DISTRICT, catalogue, max_cells=100)
    raw = RawResult(tuple(cells), total)
    return apply_disclosure(
        BY_DISTRICT, raw, grid, k=10, round_to=5, dominance=Dominance(2, 85), show_zeros=show_zeros
    )


def cell(key: str, subjects: int, cost: float, top: float | None = None) -> RawCell:
    tops = spread({"cost": cost}, subjects) if top is None else {"cost": top}
    return RawCell((key,) if key else (), subjects, subjects, {"cost": cost}, tops)


def test_the_rule_is_strictly_more_than_the_percentage() -> None:
    """85 of 100 held by the top contributors is not dominated; 85.01 is; the boundary is exact."""
    assert not dominated(100.0, 85.0, 85)
    assert dominated(100.0, 85.01, 85)
    assert not dominated(7.5, 6.375, 85)  # exactly 85 %, in binary-exact quarters and eighths


def test_a_sum_dominated_by_one_person_is_withheld_with_its_mean(catalogue: Catalogue) -> None:
    """A district of 30 people where one holds 4,000 of 4,290 cost: the count is released, the
    sum and the mean are withheld, and so is a second district's sum so the total cannot give
    the first back."""
    d01 = cell("D01", 30, 4290.0, top=4000.0 + 10.0)
    d02, d03 = cell("D02", 40, 400.0), cell("D03", 50, 5000.0)
    total = cell("", 120, 9690.0, top=4010.0)
    released = release(catalogue, [d01, d02, d03], total)
    first = released.cells[0]
    assert not first.values[0].withheld and first.values[0].value == 30.0
    assert first.values[1:] == (WITHHELD, WITHHELD)
    hidden = [c.key[0] for c in released.cells if c.values[1].withheld]
    assert len(hidden) == 2 and "D01" in hidden
    assert not released.total.values[1].withheld
    # the withheld sums together pass the rule: top-2 bounds add up to at most 85 % of their sum
    raw = {"D01": d01, "D02": d02, "D03": d03}
    assert sum(raw[k].tops["cost"] for k in hidden) * 100 <= sum(raw[k].sums["cost"] for k in hidden) * 85
    assert all(c.values[2] == WITHHELD for c in released.cells if c.key[0] in hidden)


def test_a_small_diluting_cell_is_not_enough(catalogue: Catalogue) -> None:
    """Withholding a tiny second sum beside a dominated one is no protection (their difference
    from the total is still the dominant person's): the diluting cell must be big enough."""
    d01 = cell("D01", 30, 4000.0, top=3900.0)
    d02, d03 = cell("D02", 20, 20.0), cell("D03", 50, 5000.0)
    total = cell("", 100, 9020.0, top=3950.0)
    released = release(catalogue, [d01, d02, d03], total)
    hidden = {c.key[0] for c in released.cells if c.values[1].withheld}
    assert "D03" in hidden  # the small D02 alone leaves the pair dominated


def test_when_nothing_dilutes_enough_the_total_sum_is_withheld(catalogue: Catalogue) -> None:
    """Every district dominated: no choice of parts protects them, so the total's sum goes too,
    while every count is still released."""
    cells = [cell(d, 20, 1000.0, top=990.0) for d in ("D01", "D02", "D03")]
    released = release(catalogue, cells, cell("", 60, 3000.0, top=1980.0))
    assert all(c.values[1:] == (WITHHELD, WITHHELD) for c in released.cells)
    assert released.total.values[1] == WITHHELD
    assert all(not c.values[0].withheld for c in (*released.cells, released.total))


def test_a_dominated_total_is_withheld(catalogue: Catalogue) -> None:
    """An ungrouped query whose one person holds most of the sum releases its count only."""
    spec = QuerySpec("ed_visits", MEASURES, ())
    total = cell("", 50, 1000.0, top=900.0)
    released = apply_disclosure(spec, RawResult((), total), ((),), k=10, round_to=5)
    assert released.total.values == (ReleasedValue(False, 50.0), WITHHELD, WITHHELD)


def test_missing_top_contributions_fail_closed(catalogue: Catalogue) -> None:
    """A raw result without the top contributions cannot be checked: nothing is released."""
    bare = RawCell(("D01",), 30, 30, {"cost": 10.0})
    with pytest.raises(GatewayError):
        release(catalogue, [bare], cell("", 30, 10.0))


def test_dominance_terms_are_checked() -> None:
    """n below 1 or a percentage outside (0, 100] is a GatewayError."""
    for n, percent in ((0, 85), (2, 0), (2, 101)):
        with pytest.raises(GatewayError):
            Dominance(n, percent)


def test_an_empty_cell_is_withheld_by_default_and_shown_as_zero_when_the_agreement_says(
    catalogue: Catalogue,
) -> None:
    """zeros: withhold (default) marks an empty district like a small one; zeros: show releases it
    as 0 subjects and 0 cost, its mean (of nobody) withheld, and picks no zero to protect another."""
    d01, d03 = cell("D01", 30, 300.0), cell("D03", 40, 400.0)
    total = cell("", 70, 700.0)
    hidden = release(catalogue, [d01, d03], total)
    assert hidden.cells[1].values == (WITHHELD,) * 3
    shown = release(catalogue, [d01, d03], total, show_zeros=True)
    assert shown.cells[1].values == (ReleasedValue(False, 0.0), ReleasedValue(False, 0.0), WITHHELD)
    assert [c.values[0].withheld for c in shown.cells] == [False, False, False]
    small = release(catalogue, [d01, cell("D03", 4, 40.0)], cell("", 34, 340.0), show_zeros=True)
    # D03 is small: the zero D02 is public, so D01 is withheld with it rather than D02
    assert [c.values[0].withheld for c in small.cells] == [True, False, True]


# -- properties --------------------------------------------------------------------------------


@st.composite
def sums_and_tops(draw: st.DrawFn) -> tuple[list[float], list[float], set[int]]:
    parts = draw(st.integers(2, 8))
    sums = [draw(st.integers(0, 10_000)) / 4 for _ in range(parts)]
    tops = [s * draw(st.integers(1, 100)) / 100 for s in sums]
    withheld = {i for i in range(parts) if draw(st.integers(0, 5)) == 0}
    total = sum(sums)
    return [*sums, total], [*tops, min(total, sum(tops))], withheld


@settings(max_examples=300, deadline=None)
@given(case=sums_and_tops(), percent=st.sampled_from([50, 60, 85, 90]))
def test_withheld_sums_never_come_back_from_the_total(
    case: tuple[list[float], list[float], set[int]], percent: int
) -> None:
    """Whatever is withheld: no released sum is dominated, and when the total's sum is released
    the withheld ones (total minus the released) are two or more and pass the rule together."""
    sums, tops, withheld = case
    n = len(sums) - 1
    hidden = protect_sums(sums, tops, withheld, [Relation(n, tuple(range(n)))], percent=percent)
    assert withheld <= hidden
    for i in range(len(sums)):
        if i not in hidden:
            assert not dominated(sums[i], tops[i], percent)
    inside = [i for i in range(n) if i in hidden]
    if inside and n not in hidden:
        assert len(inside) >= 2
        together = sum(Fraction(sums[i]) for i in inside)
        assert sum(Fraction(tops[i]) for i in inside) * 100 <= together * percent


@pytest.mark.parametrize(
    "obligations",
    [
        {},
        {"dominance": {"n": 2, "percent": 85}},
        {"dominance": {"n": 2, "percent": 85}, "zeros": "maybe"},
        {"dominance": {"n": 0, "percent": 85}, "zeros": "withhold"},
        {"dominance": {"n": 2, "percent": 95}, "zeros": "withhold"},
        {"dominance": {"n": "2", "percent": 85}, "zeros": "withhold"},
        {"dominance": {"n": True, "percent": 85}, "zeros": "withhold"},
        {"dominance": {"n": 2, "percent": 85.5}, "zeros": "withhold"},
        {"dominance": [2, 85], "zeros": "withhold"},
    ],
)
def test_a_decision_without_usable_cell_terms_fails_closed(obligations: dict[str, object]) -> None:
    """The server takes the dominance rule and the zeros choice only as the schema allows them."""
    from gateway.errors import PolicyEngineError
    from gateway.server._query import cell_terms

    with pytest.raises(PolicyEngineError):
        cell_terms(obligations)


def test_usable_cell_terms_are_read_as_given() -> None:
    """{n: 1, percent: 60} and zeros: show are the rule (1, 60) and shown zeros."""
    from gateway.server._query import cell_terms

    assert cell_terms({"dominance": {"n": 1, "percent": 60}, "zeros": "show"}) == (Dominance(1, 60), True)
    assert cell_terms({"dominance": {"n": 2, "percent": 85}, "zeros": "withhold"}) == (Dominance(), False)
