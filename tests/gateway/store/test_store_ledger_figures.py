"""The release ledger's figures against a plain reference: random records and random checks, the
store's counts and sums (gateway/store/_ledger.py) equal what counting the records one by one
gives, on both backends; and the union of cells written as merged boxes (gateway/store/
_cell_union.py) holds exactly the records the cells hold."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import random
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import literal_column, select

from gateway.catalogue import Catalogue
from gateway.disclosure._dominance import dominated
from gateway.disclosure._ledger import (
    CellPredicate,
    Check,
    LedgerCell,
    LinkPredicate,
    container_layers,
    grouped_pairs,
    plan_checks,
)
from gateway.query import MeasureRef, QuerySpec
from gateway.store import SqlStore
from gateway.store._cell_union import Box, box_of, merge_boxes, narrowing, union_condition
from gateway.store._schema import build_schema

EPOCH = dt.date(1970, 1, 1)
FIRST_DAY = (dt.date(2025, 1, 1) - EPOCH).days
MONTHS = ("2025-01", "2025-02", "2025-03", "2025-04", "2025-05", "2025-06")
# the test catalogue's visits (tests/gateway/store/conftest.py), in its order
DISTRICTS = ("D01", "D02", "D03", "D04")
AGE_BANDS = ("0-17", "18-34", "35-64", "65+")
SEXES = ("F", "M", "X")
PRESENTATIONS = ("overdose", "injury", "other")
DIMENSIONS = {"district": DISTRICTS, "age_band": AGE_BANDS, "sex": SEXES, "presentation": PRESENTATIONS}


def _month(day: int) -> str:
    return (EPOCH + dt.timedelta(days=day)).strftime("%Y-%m")


def _in(record: dict[str, Any], predicate: CellPredicate) -> bool:
    """Whether a record is in a cell, by the cell's description (free dimensions: any domain value)."""
    constrained = dict(predicate.dims)
    if any(record[name] not in constrained.get(name, values) for name, values in DIMENSIONS.items()):
        return False
    return predicate.months is None or _month(record["event_day"]) in predicate.months


def _random_cell(rng: random.Random, inside: CellPredicate | None = None) -> CellPredicate:
    """A random cell; with ``inside``, one that narrows it (a part of that container)."""
    constrained = dict(inside.dims) if inside else {}
    dims = []
    for name, domain in DIMENSIONS.items():
        allowed = constrained.get(name, domain)
        if name in constrained or rng.random() < 0.4:
            dims.append((name, tuple(sorted(rng.sample(list(allowed), rng.randint(1, len(allowed)))))))
    months = inside.months if inside else None
    if rng.random() < 0.5:
        pool = months or MONTHS
        months = tuple(sorted(rng.sample(list(pool), rng.randint(1, len(pool)))))
    return CellPredicate("visits", tuple(sorted(dims)), months)


def _grid_cells(container: CellPredicate) -> tuple[CellPredicate, ...]:
    """The district x month cells of ``container`` (a grid released inside it)."""
    return tuple(
        CellPredicate("visits", (*container.dims, ("district", (d,))), (m,))
        for d in DISTRICTS
        for m in MONTHS
    )


def _records(rng: random.Random, people: int, values: Sequence[float]) -> list[dict[str, Any]]:
    out = []
    for person in range(people):
        for _ in range(rng.randint(1, 4)):
            out.append(
                {
                    "subject": f"p{person}",
                    "event_day": FIRST_DAY + rng.randrange(181),
                    **{name: rng.choice(domain) for name, domain in DIMENSIONS.items()},
                    "stay_hours": rng.choice(values),
                }
            )
    return out


def _checks(rng: random.Random, count: int) -> list[Check]:
    containers = [CellPredicate("visits"), _random_cell(rng), _random_cell(rng)]
    checks = []
    for n in range(count):
        container = containers[n % len(containers)]
        if n % 5 == 4:
            parts: tuple[CellPredicate, ...] = ()
        elif n % 5 == 3 and container.months is None and "district" not in dict(container.dims):
            parts = _grid_cells(container)[: rng.randint(1, 24)]
        else:
            parts = tuple(_random_cell(rng, container) for _ in range(rng.randint(1, 3)))
        checks.append(Check(container, parts, frozenset({n}), "q"))
    return checks


def _outside(records: list[dict[str, Any]], check: Check) -> list[dict[str, Any]]:
    return [r for r in records if _in(r, check.container) and not any(_in(r, p) for p in check.parts)]


def _expected_difference(records: list[dict[str, Any]], check: Check) -> int:
    inside = {r["subject"] for r in records if _in(r, check.container)}
    in_parts = {r["subject"] for r in records if any(_in(r, p) for p in check.parts)}
    return len(inside) - len(in_parts)


def _expected_sums(records: list[dict[str, Any]], check: Check, top_n: int) -> tuple[float, float]:
    per_subject: dict[str, int] = {}
    for r in _outside(records, check):
        per_subject[r["subject"]] = per_subject.get(r["subject"], 0) + round(r["stay_hours"] * 1_000_000)
    top = sorted(per_subject.values(), reverse=True)[:top_n]
    return sum(per_subject.values()) / 1_000_000, sum(top) / 1_000_000


def _as_of(store: SqlStore, answered: bool) -> str | None:
    """None (every stored record), or the watermark of an answer just read: the ledger then counts
    the records that answer read, by subject number once the store has seen them distinct."""
    if not answered:
        return None
    return store.aggregate(QuerySpec("visits", (MeasureRef("subjects"),), ())).watermark


@pytest.mark.parametrize("answered", [False, True], ids=["all-rows", "as-of-an-answer"])
@pytest.mark.parametrize("seed", range(4))
def test_ledger_counts_and_sums_equal_counting_the_records_one_by_one(
    store: SqlStore, batches: Any, seed: int, answered: bool
) -> None:
    """For random records and random checks (a container, parts inside it: random cells or the
    cells of a grid, or none), every difference count and every (sum, top-n sum) for n of 1, 2
    and 3 is what counting the records one by one gives, people tied for the largest sum too;
    over every stored record, and over an answer's (where people are counted by number)."""
    rng = random.Random(seed)
    # odd seeds: two values only, so that people often tie for the largest sums
    records = _records(rng, 60, (24.0, 72.0) if seed % 2 else (0.0, 1.5, 2.25, 8.0, 24.0, 72.0))
    batches.store(store, "visits", "b1", records)
    # as the counts: people in the container are in the parts only by records in the container
    checks = [c for c in _checks(rng, 40) if all(_within(p, c.container) for p in c.parts)]

    as_of = _as_of(store, answered)
    assert store.ledger_differences("visits", checks, as_of) == [
        _expected_difference(records, c) for c in checks
    ]
    items = [(check, "stay_hours") for check in checks]
    for top_n in (1, 2, 3):
        figures = store.ledger_sum_differences("visits", items, top_n, as_of)
        expected = [_expected_sums(records, check, top_n) for check in checks]
        flat = [figure for pair in figures for figure in pair]
        assert flat == pytest.approx([figure for pair in expected for figure in pair], abs=1e-6), top_n
        _assert_bounded_alike(store, items, top_n, expected, as_of)


def _assert_bounded_alike(
    store: SqlStore,
    items: list[tuple[Check, str]],
    top_n: int,
    expected: list[tuple[float, float]],
    as_of: str | None = None,
) -> None:
    """With the rule's percentage given, each sum is still exact and each top-n figure is at least
    the exact one, and the rule withholds exactly where the exact figures would have it withhold."""
    for percent in (50, 85, 100):
        bounded = store.ledger_sum_differences("visits", items, top_n, as_of, near_percent=percent)
        for (total, top), (exact_total, exact_top) in zip(bounded, expected, strict=True):
            assert total == pytest.approx(exact_total, abs=1e-6)
            assert top >= exact_top - 1e-6
            assert dominated(total, top, percent) == dominated(exact_total, exact_top, percent)


def _within(part: CellPredicate, container: CellPredicate) -> bool:
    constrained = dict(part.dims)
    for name, values in container.dims:
        if not set(constrained.get(name, DIMENSIONS[name])) <= set(values):
            return False
    return container.months is None or (part.months is not None and set(part.months) <= set(container.months))


def _box_holds(box: Box, names: Sequence[str], record: dict[str, Any]) -> bool:
    for name, values in zip(names, box.axes[:-1], strict=True):
        if values is not None and record[name] not in values:
            return False
    months = box.axes[-1]
    return months is None or _month(record["event_day"]) in months


@pytest.mark.parametrize("seed", range(20))
def test_merged_boxes_hold_exactly_the_records_their_cells_hold(catalogue: Catalogue, seed: int) -> None:
    """Random cells, merged into boxes: every possible record is in some box exactly when it is in
    some cell (every value of every dimension, every month, and a month outside them all)."""
    rng = random.Random(seed)
    target = build_schema(catalogue).datasets["visits"]
    cells = [_random_cell(rng) for _ in range(rng.randint(1, 12))]
    if seed % 2:
        cells += list(_grid_cells(CellPredicate("visits")))[: rng.randint(1, 24)]
    names = list(DIMENSIONS)
    boxes = merge_boxes([box_of(cell, names, target) for cell in cells])
    assert len(boxes) <= len(set(cells))
    days = [FIRST_DAY + 31 * n for n in range(len(MONTHS))] + [FIRST_DAY + 200]  # the last: July
    for values in itertools.product(*DIMENSIONS.values(), days):
        record = dict(zip([*names, "event_day"], values, strict=True))
        in_cells = any(_in(record, cell) for cell in cells)
        assert any(_box_holds(box, names, record) for box in boxes) == in_cells


def test_a_released_grid_is_one_box(catalogue: Catalogue) -> None:
    """The 24 district x month cells of a grid are one box: every district, every month."""
    target = build_schema(catalogue).datasets["visits"]
    names = list(DIMENSIONS)
    boxes = merge_boxes([box_of(cell, names, target) for cell in _grid_cells(CellPredicate("visits"))])
    assert len(boxes) == 1
    assert boxes[0].axes[0] == frozenset(DISTRICTS)
    assert boxes[0].axes[-1] == frozenset(MONTHS)


def test_a_check_counts_the_same_alone_as_beside_others(store: SqlStore, batches: Any) -> None:
    """A part reaching outside its container (as an older contract's cell can) counts people of
    that container only: a check's figure is the same whichever checks share its statement."""
    rng = random.Random(7)
    batches.store(store, "visits", "b1", _records(rng, 60, (1.0, 8.0)))
    d01 = CellPredicate("visits", (("district", ("D01",)),))
    d02 = CellPredicate("visits", (("district", ("D02",)),))
    reaching = Check(
        d01, (CellPredicate("visits", (("district", ("D01", "D02")), ("sex", ("F",)))),), frozenset(), "q"
    )
    beside = Check(
        d02, (CellPredicate("visits", (("district", ("D02",)), ("sex", ("M",)))),), frozenset(), "q"
    )

    alone = store.ledger_differences("visits", [reaching]) + store.ledger_differences("visits", [beside])

    assert store.ledger_differences("visits", [reaching, beside]) == alone
    assert alone[0] > 0  # some D01 people have no F record there: the case is not empty


def _expected_within(records: list[dict[str, Any]], check: Check) -> int:
    """People of the container with no record of theirs in it inside a part: what a check counts
    alone, parts reaching outside the container included."""
    inside = [r for r in records if _in(r, check.container)]
    return len({r["subject"] for r in inside}) - len(
        {r["subject"] for r in inside if any(_in(r, p) for p in check.parts)}
    )


@pytest.mark.parametrize("seed", range(3))
def test_one_part_checks_counted_together_equal_each_counted_alone(
    store: SqlStore, batches: Any, seed: int
) -> None:
    """Checks grouped into one statement (one part each, the parts of a container disjoint) beside
    a part overlapping them, a part reaching outside its container and a second container: every
    figure is the one the check counts alone, and the sums are exact beside their bounds."""
    rng = random.Random(seed)
    records = _records(rng, 80, (0.0, 1.5, 8.0, 72.0))
    batches.store(store, "visits", "b1", records)
    everything = CellPredicate("visits", (("sex", ("F", "M")),))
    other = CellPredicate("visits", (("sex", ("X",)),))
    # counted first, a part of the other container reaching into this one's D03 January cell
    reaching = CellPredicate("visits", (("district", ("D03",)), ("sex", ("M", "X"))), (MONTHS[0],))
    beside = CellPredicate("visits", (("district", ("D01",)), ("sex", ("X",))))
    checks = [Check(other, (beside,), frozenset({91}), "q"), Check(other, (reaching,), frozenset({92}), "q")]
    cells = [c for c in _grid_cells(everything) if rng.random() < 0.7 or ("district", ("D03",)) in c.dims]
    checks += [Check(everything, (cell,), frozenset({n}), "q") for n, cell in enumerate(cells)]
    overlapping = CellPredicate("visits", (("district", ("D01", "D02")), ("sex", ("F",))))
    checks.append(Check(everything, (overlapping,), frozenset({90}), "q"))
    groups, rest = grouped_pairs(checks)
    assert len(groups) == 2  # the two parts in one container, the grid cells in the other
    assert len(rest) == 1  # the part overlapping the grid cells, counted alone

    assert store.ledger_differences("visits", checks) == [_expected_within(records, c) for c in checks]
    items = [(check, "stay_hours") for check in checks]
    expected = [_expected_sums(records, check, 2) for check, _ in items]
    _assert_bounded_alike(store, items, 2, expected)


def test_records_outside_the_current_domains_or_below_zero_are_counted_as_before(
    store: SqlStore, batches: Any, sql: Any
) -> None:
    """Records kept with a district the contract no longer has are in no container, whether the
    container lists every current district or none; with a negative value stored, the sums'
    bounds give way to the exact figures."""
    rng = random.Random(5)
    records = _records(rng, 40, (1.0, 8.0, 24.0))
    batches.store(store, "visits", "b1", records)
    fresh = (
        "randomblob(32)"
        if store.backend == "sqlite"
        else "decode(md5(random()::text) || md5(random()::text), 'hex')"
    )
    for value in ("'D99'", "'D99'", "'D99'"):
        sql(
            "INSERT INTO ds_visits (batch_id, subject, subject_h, event_day, event_month, district, age_band,"
            f" sex, presentation, stay_hours) SELECT batch_id, {fresh}, subject_h, event_day, event_month,"
            f" {value}, age_band, sex, presentation, 72 FROM ds_visits LIMIT 1"
        )
    sql("UPDATE ds_visits SET stay_hours = -5 WHERE district = 'D02'")
    people = len({r["subject"] for r in records})
    whole = CellPredicate("visits")
    listed = CellPredicate("visits", (("district", DISTRICTS),))
    checks = [Check(whole, (), frozenset({0}), "q"), Check(listed, (), frozenset({1}), "q")]
    assert store.ledger_differences("visits", checks) == [people, people]
    shifted = [{**r, "stay_hours": -5.0} if r["district"] == "D02" else r for r in records]
    part = CellPredicate("visits", (("district", ("D01",)),))
    items = [(Check(whole, (part,), frozenset({0}), "q"), "stay_hours")]
    exact = [_expected_sums(shifted, check, 2) for check, _ in items]
    for percent in (50, 85):
        figures = store.ledger_sum_differences("visits", items, 2, near_percent=percent)
        assert figures == [pytest.approx(pair, abs=1e-6) for pair in exact]


def test_a_whole_domain_is_no_condition_only_when_every_stored_row_is_in_the_domains(
    catalogue: Catalogue,
) -> None:
    """Every district listed, or joined from a grid's cells, is no condition once the store has
    found no row outside the domains (a released grid then constrains nothing but its months);
    otherwise the list stays."""
    target = build_schema(catalogue).datasets["visits"]
    relaxed = dataclasses.replace(target, rows_in_domain=True)
    dims = [("district", DISTRICTS), ("sex", ("F",))]
    assert narrowing(dims, target) == dims
    assert narrowing(dims, relaxed) == [("sex", ("F",))]
    grid = _grid_cells(CellPredicate("visits"))
    statement = select(literal_column("1")).where(union_condition(target.table, grid, {}, relaxed))
    assert "district" not in str(statement)  # every month still: the grid's months are its own
    assert "district" in str(
        select(literal_column("1")).where(union_condition(target.table, grid, {}, target))
    )


@pytest.mark.parametrize("seed", range(2))
def test_linked_checks_counted_together_equal_each_counted_alone(
    store: SqlStore, batches: Any, seed: int
) -> None:
    """A linked district x month grid released, then the same linked question by district: its
    checks (linked containers, linked parts, grouped) count and sum what each counts alone."""
    rng = random.Random(seed)
    records = _records(rng, 60, (0.0, 1.5, 8.0, 72.0))
    batches.store(store, "visits", "b1", records)
    contacts = [
        {
            "subject": r["subject"],
            "event_day": r["event_day"] - rng.randrange(40),
            "district": rng.choice(DISTRICTS),
            "incident_type": "other",
        }
        for r in records
        if rng.random() < 0.4
    ]
    batches.store(store, "contacts", "c1", contacts)
    link = LinkPredicate("contacts", 30, 0)
    months = MONTHS[:3]
    grid = [CellPredicate("visits", (("district", (d,)),), (m,), link) for d in DISTRICTS for m in months]
    new: list[CellPredicate | None] = [
        *(CellPredicate("visits", (("district", (d,)),), months, link) for d in DISTRICTS),
        CellPredicate("visits", (), months, link),
    ]
    released = [*grid, CellPredicate("visits", (), months, link)]
    checks = plan_checks(new, [LedgerCell("old", p) for p in released], {"district": DISTRICTS})
    groups, _ = grouped_pairs(checks)
    assert groups and all(container.link == link for container, _ in groups)

    alone = [store.ledger_differences("visits", [check])[0] for check in checks]
    assert store.ledger_differences("visits", list(checks)) == alone
    items = [(check, "stay_hours") for check in checks]
    exact = [store.ledger_sum_differences("visits", [item], 2)[0] for item in items]
    _assert_bounded_alike(store, items, 2, exact)


@pytest.mark.parametrize("answered", [False, True], ids=["all-rows", "as-of-an-answer"])
@pytest.mark.parametrize("seed", range(2))
def test_a_grid_asked_again_by_fewer_dimensions_counts_as_each_check_alone(
    store: SqlStore, batches: Any, seed: int, answered: bool
) -> None:
    """A district x month grid and its total released, then the same question by district over
    two three-month quarters: the old total's checks and each new cell's checks are grouped, in
    two layers (their containers overlap), and count and sum what each check counts alone."""
    rng = random.Random(seed)
    records = _records(rng, 60, (0.0, 1.5, 8.0, 72.0))
    batches.store(store, "visits", "b1", records)
    quarters = (MONTHS[:3], MONTHS[3:])
    released = [CellPredicate("visits", (("district", (d,)),), (m,)) for d in DISTRICTS for m in MONTHS]
    released.append(CellPredicate("visits", (), MONTHS))
    new: list[CellPredicate | None] = [
        CellPredicate("visits", (("district", (d,)),), q) for d in DISTRICTS for q in quarters
    ]
    new.append(CellPredicate("visits", (), MONTHS))
    checks = plan_checks(new, [LedgerCell("old", p) for p in released], {"district": DISTRICTS})
    groups, _ = grouped_pairs(checks)
    assert len(container_layers(groups)) == 2

    as_of = _as_of(store, answered)
    alone = [store.ledger_differences("visits", [check], as_of)[0] for check in checks]
    assert store.ledger_differences("visits", list(checks), as_of) == alone
    assert alone == [_expected_within(records, check) for check in checks]
    items = [(check, "stay_hours") for check in checks]
    _assert_bounded_alike(store, items, 2, [_expected_sums(records, check, 2) for check in checks], as_of)
