"""The release ledger's pure decisions: how cells are described, which descriptions nest, when
parts cover a container by description, which differences are counted and what is withheld."""

from __future__ import annotations

import pytest

from gateway.catalogue import Catalogue
from gateway.disclosure import build_grid
from gateway.disclosure._ledger import (
    GROUPED_LAYERS_MAX,
    CellPredicate,
    Check,
    LedgerCell,
    LinkPredicate,
    cells_to_withhold,
    container_layers,
    contains,
    covered,
    describe_cells,
    disjoint,
    domains_of,
    from_canonical,
    grouped_pairs,
    plan_checks,
    sums_to_check,
    sums_to_withhold,
)
from gateway.errors import GatewayError
from gateway.query import LinkSpec, MeasureRef, QuerySpec

SUBJECTS = (MeasureRef("subjects"),)
DISTRICTS = ("D01", "D02", "D03")


def _cells(catalogue: Catalogue, **fields: object) -> tuple[CellPredicate, ...]:
    spec = QuerySpec(dataset="ed_visits", measures=SUBJECTS, **fields)  # type: ignore[arg-type]
    return describe_cells(spec, build_grid(spec, catalogue, max_cells=1000), catalogue)


def _p(
    dims: dict[str, tuple[str, ...]] | None = None, months: tuple[str, ...] | None = None
) -> CellPredicate:
    return CellPredicate("ed_visits", tuple(sorted((dims or {}).items())), months)


def test_reordered_values_and_a_whole_domain_describe_the_same_people(catalogue: Catalogue) -> None:
    """A value list in another order, and a filter on every value of a domain, give the same predicate as no filter."""
    plain = _cells(catalogue, group_by=())
    spelled = _cells(catalogue, group_by=(), filters=(("district", ("D03", "D01", "D02")),))
    assert plain[-1] == spelled[-1] == _p()
    assert plain[-1].digest == spelled[-1].digest


def test_a_cell_is_the_filters_and_its_own_group_key(catalogue: Catalogue) -> None:
    """Each grid cell pins its key's value; a quarter stands for its three months; the total keeps the filters."""
    cells = _cells(
        catalogue,
        group_by=("district", "quarter"),
        filters=(("district", ("D01", "D02")), ("sex", ("F",))),
        months=("2025-02", "2025-04"),
    )
    assert cells[0] == _p({"district": ("D01",), "sex": ("F",)}, ("2025-02", "2025-03"))
    assert cells[1] == _p({"district": ("D01",), "sex": ("F",)}, ("2025-04",))
    assert cells[-1] == _p({"district": ("D01", "D02"), "sex": ("F",)}, ("2025-02", "2025-03", "2025-04"))


def test_canonical_text_reads_back_to_the_same_predicate(catalogue: Catalogue) -> None:
    """What the ledger stores reads back equal, link included; junk is a GatewayError, not a crash."""
    link = LinkSpec("police_incidents", 30, 0, (("incident_type", ("drugs",)),))
    for cell in _cells(catalogue, group_by=("month",), months=("2025-01", "2025-02"), link=link):
        assert from_canonical(cell.canonical()) == cell
    with pytest.raises(GatewayError):
        from_canonical('{"dataset": 1}')


def test_nesting_follows_value_sets_months_and_links() -> None:
    """Smaller value sets, fewer months, an added link, a narrower window or link filter are all inside."""
    everyone = _p()
    two = _p({"district": ("D01", "D02")})
    one = _p({"district": ("D02",)}, ("2025-02",))
    assert contains(everyone, two) and contains(two, one) and not contains(one, two)
    assert not contains(_p({"sex": ("F",)}), two)  # a constraint the inner one lacks
    wide = CellPredicate("ed_visits", (), None, LinkPredicate("police_incidents", 30, 0))
    narrow = CellPredicate(
        "ed_visits", (), None, LinkPredicate("police_incidents", 10, 0, (("incident_type", ("drugs",)),))
    )
    assert contains(everyone, wide) and contains(wide, narrow)
    assert not contains(wide, everyone) and not contains(narrow, wide)
    assert not contains(_p(), CellPredicate("police_incidents"))


def test_grid_cells_cover_their_total_but_not_a_part_of_them() -> None:
    """Every district's cell covers the total by description; two of three do not; nor do months of an open range."""
    domains = {"district": DISTRICTS}
    cells = [_p({"district": (d,)}) for d in DISTRICTS]
    assert covered(_p(), cells, domains)
    assert not covered(_p(), cells[:2], domains)
    months = [_p(None, (m,)) for m in ("2025-01", "2025-02")]
    assert covered(_p(None, ("2025-01", "2025-02")), months, domains)
    assert not covered(_p(), months, domains)


def test_a_two_way_grid_covers_its_total() -> None:
    """District by month cells cover the total over those months: a cover on two axes at once."""
    domains = {"district": DISTRICTS}
    cells = [_p({"district": (d,)}, (m,)) for d in DISTRICTS for m in ("2025-01", "2025-02")]
    assert covered(_p(None, ("2025-01", "2025-02")), cells, domains)
    assert not covered(_p(None, ("2025-01", "2025-02")), cells[:-1], domains)


def test_only_checks_that_mix_this_release_with_the_ledger_are_planned() -> None:
    """A new total over a released cell is checked; the same cell again, or unrelated cells, plan nothing."""
    domains = {"district": DISTRICTS}
    released = [LedgerCell("q1", _p({"district": ("D01", "D02")}))]
    (check,) = plan_checks([_p({"district": ("D02",)})], released, domains)
    assert check.container == released[0].predicate and check.withhold == {0} and check.against == "q1"
    assert plan_checks([released[0].predicate], released, domains) == ()
    assert plan_checks([_p({"district": ("D03",)}), None], released, domains) == ()


def test_a_total_over_cells_of_earlier_queries_is_checked_against_all_of_them() -> None:
    """Cells released by two queries, then the total: one check, the total minus both cells, withholding the total."""
    domains = {"district": DISTRICTS}
    released = [LedgerCell("q1", _p({"district": ("D01",)})), LedgerCell("q2", _p({"district": ("D02",)}))]
    (check,) = plan_checks([_p()], released, domains)
    assert set(check.parts) == {c.predicate for c in released} and check.withhold == {0}


def test_a_covered_container_still_checks_each_pair() -> None:
    """Cells covering the total by description need no union count, but each cell is still compared with the released total."""
    domains = {"district": DISTRICTS}
    new = [_p({"district": (d,)}) for d in DISTRICTS] + [_p()]
    checks = plan_checks(new, [LedgerCell("q1", _p())], domains)
    assert [c.withhold for c in checks] == [{0}, {1}, {2}]
    assert all(len(c.parts) == 1 for c in checks)


def test_small_and_empty_differences_both_withhold() -> None:
    """A difference under k withholds, none at all too (DESIGN lesson 2); k or more releases."""
    checks = [Check(_p(), (_p({"district": ("D01",)}),), frozenset({n}), "q") for n in range(3)]
    assert cells_to_withhold(checks, [0, 9, 10], k=10) == {0, 1}
    with pytest.raises(GatewayError):
        cells_to_withhold(checks, [0], k=10)


def test_domains_come_from_the_catalogue(catalogue: Catalogue) -> None:
    """The planner's domains are the dataset's own."""
    assert domains_of(catalogue, "ed_visits")["district"] == DISTRICTS


FOUR = ("D01", "D02", "D03", "D04")


def test_two_overlapping_cells_and_their_union_plan_a_check_of_the_overlap() -> None:
    """{D01,D02} and {D02,D03} released, then {D01,D02,D03}: the overlap {D02} must hold k people, and a
    failure withholds the union (the new cell of the three)."""
    domains = {"district": FOUR}
    a, b = _p({"district": ("D01", "D02")}), _p({"district": ("D02", "D03")})
    union = _p({"district": ("D01", "D02", "D03")})
    checks = plan_checks([union], [LedgerCell("q1", a), LedgerCell("q2", b)], domains)
    (overlap,) = [c for c in checks if not c.parts]
    assert overlap.container == _p({"district": ("D02",)}) and overlap.withhold == {0}
    assert set(overlap.derived_from) == {union, a, b}


def test_overlapping_month_ranges_and_their_union_plan_a_check_of_the_shared_months() -> None:
    """January-February and February-March released, then January-March: February is checked; a new
    range that overlaps without a released union plans no overlap check."""
    domains = {"district": FOUR}
    jan_feb, feb_mar = _p(None, ("2025-01", "2025-02")), _p(None, ("2025-02", "2025-03"))
    ledger = [LedgerCell("q1", jan_feb), LedgerCell("q2", feb_mar)]
    checks = plan_checks([_p(None, ("2025-01", "2025-02", "2025-03"))], ledger, domains)
    assert [c.container for c in checks if not c.parts] == [_p(None, ("2025-02",))]
    lone = plan_checks([_p(None, ("2025-02", "2025-03"))], [LedgerCell("q1", jan_feb)], domains)
    assert lone == ()


def test_cells_differing_on_two_axes_or_not_overlapping_plan_no_overlap_check() -> None:
    """A district cell and a month cell under a released total overlap, but their union is not a released
    cell; two disjoint cells have no overlap: neither plans an overlap check."""
    domains = {"district": FOUR}
    total = _p({"district": ("D01", "D02")}, ("2025-01", "2025-02"))
    by_district = _p({"district": ("D01",)}, ("2025-01", "2025-02"))
    by_month = _p({"district": ("D01", "D02")}, ("2025-01",))
    checks = plan_checks([by_month], [LedgerCell("q1", total), LedgerCell("q1", by_district)], domains)
    assert all(c.parts for c in checks)
    disjoint = plan_checks(
        [_p({"district": ("D01", "D02")})],
        [LedgerCell("q1", _p({"district": ("D01",)})), LedgerCell("q2", _p({"district": ("D02",)}))],
        domains,
    )
    assert all(c.parts for c in disjoint)


def test_a_difference_of_sums_is_checked_only_when_every_cell_it_comes_from_released_the_sum() -> None:
    """A mean counts as a released sum; a cell that released only counts leaves the difference's sum
    unknown, so nothing is planned for it."""
    outer, inner = _p(), _p({"district": ("D02",)})
    check = Check(outer, (inner,), frozenset({0}), "q1")
    both = {outer: frozenset({"sum:stay"}), inner: frozenset({"mean:stay", "records"})}
    assert sums_to_check([check], both, ["stay"]) == ((0, "stay"),)
    counts_only = {outer: frozenset({"sum:stay"}), inner: frozenset({"subjects"})}
    assert sums_to_check([check], counts_only, ["stay"]) == ()


def test_a_dominated_difference_of_sums_withholds_its_new_cells() -> None:
    """Top two holding over 85 % of the difference's sum withholds; exactly 85 % or less releases."""
    checks = [Check(_p(), (_p({"district": ("D01",)}),), frozenset({n}), "q") for n in range(3)]
    items = [(0, "stay"), (1, "stay"), (2, "stay")]
    assert sums_to_withhold(checks, items, [(100.0, 86.0), (100.0, 85.0), (0.0, 0.0)], percent=85) == {0}
    with pytest.raises(GatewayError):
        sums_to_withhold(checks, items, [(1.0, 1.0)], percent=85)


def test_one_part_checks_of_disjoint_parts_are_grouped_and_the_rest_counted_one_by_one() -> None:
    """A district total over its released month cells (disjoint) is one group of one-part checks; a
    container whose parts overlap, a lone pair and a check with two parts are left to be counted alone."""
    d1, d2 = _p({"district": ("D01",)}), _p({"district": ("D02",)})
    jan, feb = ("2025-01",), ("2025-02",)
    checks = [
        Check(d1, (_p({"district": ("D01",)}, jan),), frozenset({0}), "q"),
        Check(d1, (_p({"district": ("D01",)}, feb),), frozenset({0}), "q"),
        Check(d2, (_p({"district": ("D02",)}, ("2025-01", "2025-02")),), frozenset({1}), "q"),
        Check(d2, (_p({"district": ("D02",)}, ("2025-02", "2025-03")),), frozenset({1}), "q"),
        Check(_p(), (d1, d2), frozenset({2}), "q"),
    ]
    groups, rest = grouped_pairs(checks)
    assert [(container, [n for n, _ in pairs]) for container, pairs in groups] == [(d1, [0, 1])]
    assert rest == (2, 3, 4)


def test_a_part_overlapping_the_others_is_counted_alone_and_the_rest_stay_grouped() -> None:
    """A new question's total checked beside its own cells against one released total: the cells
    (disjoint) are one group and the total, overlapping each of them, is the only check left, in
    whichever order the checks come."""
    cells = [_p({"district": (d,)}, (m,)) for d in ("D01", "D02") for m in ("2025-01", "2025-02")]
    whole = _p(None, ("2025-01", "2025-02"))
    checks = [Check(_p(), (cell,), frozenset({n}), "q") for n, cell in enumerate(cells)]
    checks.insert(0, Check(_p(), (whole,), frozenset({4}), "q"))  # asked first, still left out
    groups, rest = grouped_pairs(checks)
    assert [(container, [n for n, _ in pairs]) for container, pairs in groups] == [(_p(), [1, 2, 3, 4])]
    assert rest == (0,)


def test_groups_whose_containers_overlap_are_counted_in_separate_layers() -> None:
    """A released total with new year cells as its parts, and each new year cell as the container
    of its released months: both kinds are grouped, the total in a layer of its own."""
    months = {"2024": ("2024-01", "2024-02"), "2025": ("2025-01", "2025-02")}
    years = {y: _p({"district": ("D01",)}, ms) for y, ms in months.items()}
    checks = [Check(_p(), (cell,), frozenset({n}), "q") for n, cell in enumerate(years.values())]
    checks += [
        Check(years[y], (_p({"district": ("D01",)}, (m,)),), frozenset({2}), "q")
        for y, ms in months.items()
        for m in ms
    ]
    groups, rest = grouped_pairs(checks)
    assert rest == ()
    layers = container_layers(groups)
    assert [[container for container, _ in layer] for layer in layers] == [
        [_p()],
        [years["2024"], years["2025"]],
    ]


def test_groups_beyond_the_last_layer_are_counted_one_by_one() -> None:
    """Six nested containers, two disjoint parts each: the first GROUPED_LAYERS_MAX are grouped, a
    layer each; the checks of the others are left with the rest (and so count towards the limit
    of checks a query may need)."""
    filters = [
        ("age_band", ("0-17",)),
        ("sex", ("F",)),
        ("presentation", ("overdose",)),
        ("district", ("D01",)),
    ]
    containers = [_p(dict(filters[:depth])) for depth in range(GROUPED_LAYERS_MAX + 2)]
    checks = [
        Check(container, (_p(dict(container.dims), (month,)),), frozenset({n}), "q")
        for n, container in enumerate(containers)
        for month in ("2025-01", "2025-02")
    ]
    groups, rest = grouped_pairs(checks)
    assert [container for container, _ in groups] == containers[:GROUPED_LAYERS_MAX]
    assert len(container_layers(groups)) == GROUPED_LAYERS_MAX
    assert rest == tuple(range(2 * GROUPED_LAYERS_MAX, len(checks)))


def test_disjoint_needs_a_dimension_or_the_months_with_no_value_in_common() -> None:
    """Different districts, or months apart, are disjoint; a free dimension overlaps everything."""
    assert disjoint(_p({"district": ("D01",)}), _p({"district": ("D02",)}))
    assert disjoint(_p(None, ("2025-01",)), _p({"district": ("D01",)}, ("2025-02",)))
    assert not disjoint(_p({"district": ("D01",)}), _p({"sex": ("F",)}))
    assert not disjoint(_p({"district": ("D01", "D02")}), _p({"district": ("D02",)}, ("2025-01",)))
