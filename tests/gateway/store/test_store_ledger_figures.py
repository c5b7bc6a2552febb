"""The release ledger's figures against a plain reference: random records and random checks, the
store's counts and sums (gateway/store/_ledger.py) equal what counting the records one by one
gives, on both backends; and the union of cells written as merged boxes (gateway/store/
_cell_union.py) holds exactly the records the cells hold."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Sequence
from typing import Any

import pytest

from gateway.catalogue import Catalogue
from gateway.disclosure._ledger import CellPredicate, Check
from gateway.store import SqlStore
from gateway.store._cell_union import Box, box_of, merge_boxes
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


@pytest.mark.parametrize("seed", range(4))
def test_ledger_counts_and_sums_equal_counting_the_records_one_by_one(
    store: SqlStore, batches: Any, seed: int
) -> None:
    """For random records and random checks (a container, parts inside it: random cells or the
    cells of a grid, or none), every difference count and every (sum, top-n sum) for n of 1, 2
    and 3 is what counting the records one by one gives, people tied for the largest sum too."""
    rng = random.Random(seed)
    # odd seeds: two values only, so that people often tie for the largest sums
    records = _records(rng, 60, (24.0, 72.0) if seed % 2 else (0.0, 1.5, 2.25, 8.0, 24.0, 72.0))
    batches.store(store, "visits", "b1", records)
    # as the counts: people in the container are in the parts only by records in the container
    checks = [c for c in _checks(rng, 40) if all(_within(p, c.container) for p in c.parts)]

    assert store.ledger_differences("visits", checks) == [_expected_difference(records, c) for c in checks]
    items = [(check, "stay_hours") for check in checks]
    for top_n in (1, 2, 3):
        figures = store.ledger_sum_differences("visits", items, top_n)
        expected = [_expected_sums(records, check, top_n) for check in checks]
        flat = [figure for pair in figures for figure in pair]
        assert flat == pytest.approx([figure for pair in expected for figure in pair], abs=1e-6), top_n


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
