"""The same data and the same questions give the same answers on SQLite and PostgreSQL: the raw
aggregates the database computes and what disclosure control releases from them (issue 5,
"same answers on SQLite and PostgreSQL")."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import store_rows

from gateway.catalogue import Catalogue
from gateway.disclosure import apply_disclosure, build_grid, round_to_base
from gateway.query import LinkSpec, MeasureRef, QuerySpec
from gateway.store import SqlStore, open_store
from gateway.store.testing import fresh_postgres_schema

pytestmark = pytest.mark.postgres

ALL_MEASURES = (
    MeasureRef("subjects"),
    MeasureRef("records"),
    MeasureRef("sum", "stay_hours"),
    MeasureRef("mean", "stay_hours"),
)
FIRST_DAY = store_rows.FIRST_DAY
DAYS = 456
LINK = LinkSpec("contacts", days_before=30, days_after=7, filters=(("incident_type", ("assault", "other")),))

BATTERY: dict[str, QuerySpec] = {
    "no-grouping": QuerySpec("visits", ALL_MEASURES, ()),
    "month": QuerySpec("visits", ALL_MEASURES, ("month",), months=("2023-10", "2024-12")),
    "quarter": QuerySpec("visits", ALL_MEASURES, ("quarter",), months=("2023-10", "2024-12")),
    "year": QuerySpec("visits", ALL_MEASURES, ("year",), months=("2023-11", "2024-02")),
    "district": QuerySpec("visits", ALL_MEASURES, ("district",)),
    "district-filtered": QuerySpec(
        "visits", ALL_MEASURES, ("district",), filters=(("district", ("D01", "D03")), ("sex", ("F", "X")))
    ),
    "month-by-district": QuerySpec(
        "visits", ALL_MEASURES, ("month", "district"), months=("2024-01", "2024-06")
    ),
    "quarter-by-presentation-filtered": QuerySpec(
        "visits",
        ALL_MEASURES,
        ("quarter", "presentation"),
        filters=(("age_band", ("18-34", "35-64")),),
        months=("2023-12", "2024-09"),
    ),
    "three-dimensions": QuerySpec(
        "visits", ALL_MEASURES, ("age_band", "sex", "year"), months=("2023-10", "2024-12")
    ),
    "month-range-only": QuerySpec("visits", ALL_MEASURES, ("district",), months=("2024-02", "2024-03")),
    "month-as-filter": QuerySpec(
        "visits", ALL_MEASURES, ("sex",), filters=(("month", ("2023-10", "2024-09")),)
    ),
    "linked": QuerySpec("visits", ALL_MEASURES, ("district",), link=LINK),
    "linked-by-quarter": QuerySpec(
        "visits",
        ALL_MEASURES,
        ("quarter",),
        filters=(("presentation", ("overdose", "injury")),),
        months=("2023-10", "2024-12"),
        link=LinkSpec("contacts", days_before=90, days_after=0),
    ),
    "counts-only": QuerySpec("visits", (MeasureRef("records"),), ("district", "sex")),
    "nothing-matches": QuerySpec("visits", ALL_MEASURES, ("month",), months=("2030-01", "2030-06")),
}


def _visits(*, exact: bool, seed: int = 5, n: int = 2500, people: int = 400) -> list[dict[str, Any]]:
    """Quarter-hour stays (``exact``) or arbitrary doubles; see store_rows.visits."""
    return store_rows.visits(seed=seed, n=n, people=people, days=DAYS, exact=exact)


def _contacts(seed: int = 9, n: int = 900, people: int = 500) -> list[dict[str, Any]]:
    return store_rows.contacts(seed=seed, n=n, people=people, days=DAYS)


def _load(store: SqlStore, batches: Any, *, exact: bool) -> None:
    visits = _visits(exact=exact)
    for i in range(0, len(visits), 1000):  # several batches, as agents send them
        batches.store(store, "visits", f"v-{i}", visits[i : i + 1000])
    batches.store(store, "contacts", "c-0", _contacts())


@pytest.fixture(scope="module", params=["quarter-hours", "arbitrary-doubles"])
def both(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    catalogue: Catalogue,
    batches: Any,
    postgres_base_url: str,
) -> Iterator[tuple[SqlStore, SqlStore]]:
    """One SQLite and one PostgreSQL store holding the same batches, loaded once for the battery."""
    exact = request.param == "quarter-hours"
    sqlite_url = f"sqlite:///{Path(tmp_path_factory.mktemp('parity')) / 'gateway.db'}"
    with fresh_postgres_schema(postgres_base_url, prefix="parity") as pg_url:
        lite, pg = open_store(sqlite_url, catalogue), open_store(pg_url, catalogue)
        try:
            _load(lite, batches, exact=exact)
            _load(pg, batches, exact=exact)
            yield lite, pg
        finally:
            lite.close()
            pg.close()


@pytest.mark.parametrize("case", BATTERY)
def test_raw_aggregates_are_identical_on_both_backends(
    request: pytest.FixtureRequest, both: tuple[SqlStore, SqlStore], case: str
) -> None:
    """Every cell's key, distinct subjects, records and sums, and the total, are equal on SQLite and
    PostgreSQL (sums of arbitrary doubles to 1e-12 relative: see below)."""
    lite, pg = both
    spec = BATTERY[case]
    a, b = lite.aggregate(spec), pg.aggregate(spec)
    if "quarter-hours" in request.node.callspec.id:
        # everything but the watermark, the newest batch stamp each database gave: the time
        # each stored the same batches, not a figure
        assert dataclasses.replace(a, watermark="") == dataclasses.replace(b, watermark="")
        assert a.watermark and b.watermark
        return
    # Found by this test: each database adds a group's doubles in its own order, so sums of
    # arbitrary doubles can differ in the last bits, and a rounded release could then tip at an
    # exact half. An exact fix is integer fixed-point sums in SQL (store/_aggregate.py).
    assert [(c.key, c.subjects, c.records) for c in (*a.cells, a.total)] == [
        (c.key, c.subjects, c.records) for c in (*b.cells, b.total)
    ]
    for x, y in zip((*a.cells, a.total), (*b.cells, b.total), strict=True):
        assert x.sums.keys() == y.sums.keys()
        assert all(math.isclose(x.sums[f], y.sums[f], rel_tol=1e-12, abs_tol=1e-9) for f in x.sums)


@pytest.mark.parametrize("case", BATTERY)
@pytest.mark.parametrize(("k", "round_to"), [(10, 5), (25, 10)])
def test_released_results_are_identical_on_both_backends(
    both: tuple[SqlStore, SqlStore], catalogue: Catalogue, case: str, k: int, round_to: int
) -> None:
    """What disclosure control releases (values, withheld markers, counts withheld) is the same on both."""
    lite, pg = both
    spec = BATTERY[case]
    grid = build_grid(spec, catalogue, max_cells=2000)
    released = [
        apply_disclosure(spec, s.aggregate(spec, top_n=2), grid, k=k, round_to=round_to) for s in (lite, pg)
    ]
    assert released[0] == released[1]


def test_the_battery_releases_some_cells_and_withholds_others(
    both: tuple[SqlStore, SqlStore], catalogue: Catalogue
) -> None:
    """The data is shaped so that the battery, at k = 10, both releases and withholds: parity is not vacuous."""
    lite, _ = both
    withheld = released = 0
    for spec in BATTERY.values():
        grid = build_grid(spec, catalogue, max_cells=2000)
        result = apply_disclosure(spec, lite.aggregate(spec, top_n=2), grid, k=10, round_to=5)
        withheld += result.cells_withheld
        released += result.cells_released
    assert withheld > 0
    assert released > 0


@pytest.fixture(scope="module")
def tenths(
    tmp_path_factory: pytest.TempPathFactory, catalogue: Catalogue, batches: Any, postgres_base_url: str
) -> Iterator[tuple[SqlStore, SqlStore]]:
    """Both backends holding 20,000 visits whose stays are recorded to a tenth of an hour."""
    rnd = random.Random(3)
    rows = [
        {**row, "stay_hours": rnd.randrange(0, 720) / 10}
        for row in _visits(exact=True, seed=3, n=20_000, people=3000)
    ]
    sqlite_url = f"sqlite:///{Path(tmp_path_factory.mktemp('tenths')) / 'gateway.db'}"
    with fresh_postgres_schema(postgres_base_url, prefix="parity") as pg_url:
        stores = open_store(sqlite_url, catalogue), open_store(pg_url, catalogue)
        try:
            for store in stores:
                for i in range(0, len(rows), 5000):
                    batches.store(store, "visits", f"v-{i}", rows[i : i + 5000])
            yield stores
        finally:
            for store in stores:
                store.close()


def test_sums_of_tenths_round_alike_on_both_backends(tenths: tuple[SqlStore, SqlStore]) -> None:
    """Stays recorded to a tenth of an hour, summed by month, district and sex, round to the same
    multiple of 5 on both backends in every cell (whatever suppression later withholds)."""
    spec = QuerySpec(
        "visits",
        (MeasureRef("sum", "stay_hours"),),
        ("month", "district", "sex"),
        months=("2023-10", "2024-12"),
    )
    lite, pg = (
        {c.key: round_to_base(c.sums["stay_hours"], 5) for c in s.aggregate(spec).cells} for s in tenths
    )
    assert lite == pg
