"""Aggregates computed in the database equal the same figures computed in Python from the rows,
under either index profile (the lean one answers links through a materialised probe side)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytest
import store_rows

from gateway.errors import InvalidRequest
from gateway.query import LinkSpec, MeasureRef, QuerySpec, RawResult
from gateway.store import SqlStore

MEASURES = (MeasureRef("subjects"), MeasureRef("records"), MeasureRef("sum", "stay_hours"))
FIRST_DAY = store_rows.FIRST_DAY
DAYS = 366


@pytest.fixture
def store(indexed: SqlStore) -> SqlStore:
    """The conftest store, once per index profile: answers must not depend on the indexes."""
    return indexed


def _visits(seed: int = 7, n: int = 700, people: int = 90) -> list[dict[str, Any]]:
    return store_rows.visits(seed=seed, n=n, people=people, days=DAYS)


def _contacts(seed: int = 11, n: int = 300, people: int = 120) -> list[dict[str, Any]]:
    return store_rows.contacts(seed=seed, n=n, people=people, days=DAYS)


# -- an independent reference: plain Python over the rows that were stored ----------------------


def _month(day: int) -> str:
    date = dt.date(1970, 1, 1) + dt.timedelta(days=day)
    return f"{date.year:04d}-{date.month:02d}"


def _time_value(row: Mapping[str, Any], name: str) -> str:
    month = _month(row["event_day"])
    year, number = month.split("-")
    return {"month": month, "quarter": f"{year}-Q{(int(number) - 1) // 3 + 1}", "year": year}.get(
        name
    ) or str(row[name])


def _passes(row: Mapping[str, Any], filters: Iterable[tuple[str, Sequence[str]]]) -> bool:
    return all(_time_value(row, name) in values for name, values in filters)


def _reference(
    spec: QuerySpec, rows: Sequence[Mapping[str, Any]], others: Sequence[Mapping[str, Any]]
) -> dict[Any, Any]:
    kept = [r for r in rows if _passes(r, spec.filters)]
    if spec.months:
        kept = [r for r in kept if spec.months[0] <= _month(r["event_day"]) <= spec.months[1]]
    if spec.link:
        link = spec.link
        linked = [o for o in others if _passes(o, link.filters)]
        kept = [
            r
            for r in kept
            if any(
                o["subject"] == r["subject"]
                and r["event_day"] - link.days_before <= o["event_day"] <= r["event_day"] + link.days_after
                for o in linked
            )
        ]
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = defaultdict(list)
    for r in kept:
        groups[tuple(_time_value(r, g) for g in spec.group_by)].append(r)

    def figures(members: Sequence[Mapping[str, Any]]) -> tuple[int, int, dict[str, float]]:
        sums = {f: float(sum(m[f] for m in members)) for f in spec.sum_fields}
        return len({m["subject"] for m in members}), len(members), sums

    return {"cells": {key: figures(members) for key, members in groups.items()}, "total": figures(kept)}


def _as_reference(result: RawResult) -> dict[Any, Any]:
    cells = {c.key: (c.subjects, c.records, dict(c.sums)) for c in result.cells}
    assert len(cells) == len(result.cells), "a group appears twice"
    total = result.total
    return {"cells": cells, "total": (total.subjects, total.records, dict(total.sums))}


CASES = {
    "month": QuerySpec("visits", MEASURES, ("month",)),
    "district-month-filtered": QuerySpec(
        "visits",
        MEASURES,
        ("district", "month"),
        filters=(("district", ("D01", "D03")),),
        months=("2023-12", "2024-05"),
    ),
    "quarter": QuerySpec("visits", MEASURES, ("quarter",), filters=(("sex", ("F",)),)),
    "year": QuerySpec("visits", MEASURES, ("year",), months=("2023-11", "2024-02")),
    "age-sex-month": QuerySpec(
        "visits",
        (*MEASURES, MeasureRef("mean", "stay_hours")),
        ("age_band", "sex", "month"),
        filters=(("presentation", ("injury", "overdose")),),
        months=("2024-01", "2024-06"),
    ),
    "month-as-filter": QuerySpec(
        "visits", MEASURES, ("district",), filters=(("month", ("2023-10", "2024-09")),)
    ),
    "linked": QuerySpec(
        "visits",
        MEASURES,
        ("quarter", "district"),
        filters=(("presentation", ("overdose",)),),
        link=LinkSpec(
            "contacts", days_before=30, days_after=7, filters=(("incident_type", ("assault", "other")),)
        ),
    ),
    "nothing-matches": QuerySpec("visits", MEASURES, ("month",), months=("2030-01", "2030-12")),
}


@pytest.mark.parametrize("case", CASES)
def test_aggregate_equals_python_reference(store: SqlStore, batches: Any, case: str) -> None:
    """Cells and total (distinct subjects, records, sums) match a Python recount of the stored rows."""
    visits, contacts = _visits(), _contacts()
    for i in range(0, len(visits), 250):  # several batches, as agents send them
        batches.store(store, "visits", f"v-{i}", visits[i : i + 250])
    batches.store(store, "contacts", "c-0", contacts)
    spec = CASES[case]
    expected = _reference(spec, visits, contacts)
    result = store.aggregate(spec)
    assert _as_reference(result) == expected
    assert [c.key for c in result.cells] == sorted(expected["cells"])  # same order on both backends
    if case != "nothing-matches":  # a reference with empty cells would prove nothing
        assert len(expected["cells"]) > 1


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("digest", [False, True])
def test_the_dominance_fast_path_counts_as_the_reference(
    store: SqlStore, batches: Any, case: str, digest: bool
) -> None:
    """With the dominance bound (a rule at 100 %, so the bound is always what comes back), cells
    and total match the Python recount, the people digests and data version are the exact
    answer's, and no bounded top-2 is below the exact one, whichever way the backend counts the total (PostgreSQL: beside the cells, or as
    their statement's grand-total grouping set for a link; SQLite: grouped by subject)."""
    visits, contacts = _visits(), _contacts()
    for i in range(0, len(visits), 250):
        batches.store(store, "visits", f"v-{i}", visits[i : i + 250])
    batches.store(store, "contacts", "c-0", contacts)
    spec = CASES[case]
    bound = store.aggregate(spec, top_n=2, digest=digest, near_percent=100)
    exact = store.aggregate(spec, top_n=2, digest=digest)
    assert _as_reference(bound) == _reference(spec, visits, contacts)
    assert [c.people for c in (*bound.cells, bound.total)] == [c.people for c in (*exact.cells, exact.total)]
    assert bound.data_version == exact.data_version
    pairs = zip((*bound.cells, bound.total), (*exact.cells, exact.total), strict=True)
    assert all(b.tops["stay_hours"] >= e.tops["stay_hours"] for b, e in pairs)  # never below exact


def test_subjects_are_counted_once_however_many_records(store: SqlStore, batches: Any) -> None:
    """9 people with 30 records between them: 9 subjects and 30 records, in total and per cell."""
    rows = [
        {
            "subject": f"s{i % 9}",
            "event_day": FIRST_DAY + 100 + (i % 2),  # two days of one month
            "district": "D01",
            "age_band": "18-34",
            "sex": "F",
            "presentation": "other",
            "stay_hours": 1.0,
        }
        for i in range(30)
    ]
    batches.store(store, "visits", "b-1", rows)
    result = store.aggregate(QuerySpec("visits", MEASURES, ("month",)))
    assert [(c.subjects, c.records) for c in result.cells] == [(9, 30)]
    assert (result.total.subjects, result.total.records, result.total.sums) == (9, 30, {"stay_hours": 30.0})


def test_time_keys_for_every_month(store: SqlStore, batches: Any) -> None:
    """Each month maps to its quarter and year: 2023-12 → 2023-Q4, 2024-01..03 → 2024-Q1, ..."""
    rows = []
    for year, month in [(2023, 12)] + [(2024, m) for m in range(1, 13)]:
        day = (dt.date(year, month, 15) - dt.date(1970, 1, 1)).days
        rows.append({**_visits(n=1)[0], "subject": f"{year}-{month}", "event_day": day})
    batches.store(store, "visits", "b-1", rows)

    def keys(unit: str) -> dict[str, int]:
        return {c.key[0]: c.records for c in store.aggregate(QuerySpec("visits", MEASURES, (unit,))).cells}

    assert keys("quarter") == {"2023-Q4": 1, "2024-Q1": 3, "2024-Q2": 3, "2024-Q3": 3, "2024-Q4": 3}
    assert keys("year") == {"2023": 1, "2024": 12}
    assert keys("month") == {"2023-12": 1, **{f"2024-{m:02d}": 1 for m in range(1, 13)}}


def test_link_keeps_subjects_seen_in_the_window_edges_included(store: SqlStore, batches: Any) -> None:
    """A contact exactly days_before before or days_after after counts; one day further does not;
    neither does a contact that fails the link's filters, or no contact at all."""
    day = FIRST_DAY + 200
    visit = {
        "district": "D02",
        "age_band": "35-64",
        "sex": "M",
        "presentation": "overdose",
        "stay_hours": 2.0,
    }
    visits = [{**visit, "subject": s, "event_day": day} for s in "ABCDEFG"]
    visits.append({**visit, "subject": "A", "event_day": day + 100})  # A again, far from any contact
    contact = {"district": "D02", "incident_type": "assault"}
    contacts = [
        {**contact, "subject": "A", "event_day": day - 30},  # first day of the window
        {**contact, "subject": "B", "event_day": day + 7},  # last day of the window
        {**contact, "subject": "C", "event_day": day - 31},
        {**contact, "subject": "D", "event_day": day + 8},
        {**contact, "subject": "E", "event_day": day, "incident_type": "other"},  # filtered out
        {**contact, "subject": "G", "event_day": day},
        {**contact, "subject": "H", "event_day": day},  # never visited
    ]
    batches.store(store, "visits", "v", visits)
    batches.store(store, "contacts", "c", contacts)
    link = LinkSpec("contacts", days_before=30, days_after=7, filters=(("incident_type", ("assault",)),))
    result = store.aggregate(QuerySpec("visits", MEASURES, ("district",), link=link))
    assert (result.total.subjects, result.total.records) == (3, 3)  # A, B and G, each once
    assert [(c.key, c.subjects) for c in result.cells] == [(("D02",), 3)]


def test_an_empty_selection_has_no_cells_and_a_zero_total(store: SqlStore, batches: Any) -> None:
    """No matching rows: no cells, and a total of zero subjects, records and sums (not NULL)."""
    batches.store(store, "visits", "b-1", _visits(n=20))
    result = store.aggregate(QuerySpec("visits", MEASURES, ("district",), filters=(("district", ()),)))
    assert result.cells == ()
    assert (result.total.subjects, result.total.records, dict(result.total.sums)) == (
        0,
        0,
        {"stay_hours": 0.0},
    )


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (QuerySpec("nope", MEASURES, ()), "dataset"),
        (QuerySpec("visits", MEASURES, ("postcode",)), "group_by.postcode"),
        (QuerySpec("visits", MEASURES, (), filters=(("postcode", ("x",)),)), "filters.postcode"),
        (QuerySpec("visits", (MeasureRef("sum", "weight"),), ()), "measures.weight"),
        (QuerySpec("visits", MEASURES, (), link=LinkSpec("nope", 1, 1)), "link.dataset"),
        (QuerySpec("visits", MEASURES, (), link=LinkSpec("contacts", -1, 1)), "link.days_before"),
        (
            QuerySpec("visits", MEASURES, (), link=LinkSpec("contacts", 1, 1, (("presentation", ("x",)),))),
            "link.filters.presentation",
        ),
    ],
)
def test_a_query_the_schema_cannot_answer_names_the_field(
    store: SqlStore, spec: QuerySpec, field: str
) -> None:
    """Names that are not columns of the dataset are refused before any SQL runs."""
    with pytest.raises(InvalidRequest) as caught:
        store.aggregate(spec)
    assert caught.value.field == field
