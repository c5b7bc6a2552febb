"""The top-n contributions the dominance rule needs (DESIGN §9.4), computed in the database in the
same statement as the cell's figures: per subject, not per record, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import pytest

from gateway.query import MeasureRef, QuerySpec
from gateway.store import SqlStore
from gateway.store._aggregate import compile_aggregate

SUM = MeasureRef("sum", "stay_hours")
MEASURES = (MeasureRef("subjects"), MeasureRef("records"), SUM, MeasureRef("mean", "stay_hours"))
DAY = 19700  # 2023-12-08


def _row(subject: str, district: str, hours: float, day: int = DAY) -> dict[str, Any]:
    return {
        "subject": subject,
        "event_day": day,
        "district": district,
        "age_band": "18-34",
        "sex": "F",
        "presentation": "other",
        "stay_hours": hours,
    }


def _random_rows(seed: int = 3) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    return [
        _row(f"p{rnd.randrange(40)}", rnd.choice(("D01", "D02", "D03")), rnd.randrange(0, 288) / 4)
        for _ in range(400)
    ]


def _top(rows: list[dict[str, Any]], n: int) -> float:
    per_subject: dict[str, float] = defaultdict(float)
    for r in rows:
        per_subject[r["subject"]] += r["stay_hours"]
    return float(sum(sorted(per_subject.values(), reverse=True)[:n]))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_top_contributions_match_a_python_recount(store: SqlStore, batches: Any, n: int) -> None:
    """Per cell and in total, the top-n sum equals the n largest per-subject sums, and subjects,
    records and sums are the same as without the ranking."""
    rows = _random_rows()
    batches.store(store, "visits", "b", rows)
    spec = QuerySpec("visits", MEASURES, ("district",))
    ranked, plain = store.aggregate(spec, top_n=n), store.aggregate(spec)
    by_district: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_district[r["district"]].append(r)
    assert {c.key[0]: c.tops["stay_hours"] for c in ranked.cells} == {
        d: _top(members, n) for d, members in by_district.items()
    }
    assert ranked.total.tops == {"stay_hours": _top(rows, n)}
    strip = [(c.key, c.subjects, c.records, dict(c.sums)) for c in ranked.cells]
    assert strip == [(c.key, c.subjects, c.records, dict(c.sums)) for c in plain.cells]
    assert (ranked.total.subjects, ranked.total.records) == (plain.total.subjects, plain.total.records)
    assert plain.total.tops == {}  # not asked for, not computed


def test_one_person_with_many_records_is_one_contributor(store: SqlStore, batches: Any) -> None:
    """Twelve records of 10 hours by one person rank as one contribution of 120, above eleven
    people with 50 each: the top-1 is 120, the top-2 is 170."""
    rows = [_row("heavy", "D01", 10.0, DAY + i) for i in range(12)]
    rows += [_row(f"light{i}", "D01", 50.0) for i in range(11)]
    batches.store(store, "visits", "b", rows)
    spec = QuerySpec("visits", MEASURES, ("district", "month"))
    one, two = store.aggregate(spec, top_n=1), store.aggregate(spec, top_n=2)
    assert [c.tops for c in one.cells] == [{"stay_hours": 120.0}]
    assert [c.tops for c in two.cells] == [{"stay_hours": 170.0}]
    assert [(c.subjects, c.records, c.sums["stay_hours"]) for c in two.cells] == [(12, 23, 670.0)]


def test_an_empty_selection_has_zero_figures(store: SqlStore, batches: Any) -> None:
    """No matching rows: no cells, and a total of zero subjects, records, sums and tops."""
    batches.store(store, "visits", "b", _random_rows())
    spec = QuerySpec("visits", MEASURES, ("district",), months=("2030-01", "2030-12"))
    result = store.aggregate(spec, top_n=2)
    assert result.cells == ()
    total = result.total
    assert (total.subjects, total.records, dict(total.sums), dict(total.tops)) == (
        0,
        0,
        {"stay_hours": 0.0},
        {"stay_hours": 0.0},
    )


def test_two_people_sharing_the_largest_sum_are_the_top_two(store: SqlStore, batches: Any) -> None:
    """Two people with 30 hours each and eight with 5: the top two hold 60, not 30 + 5."""
    rows = [_row("a", "D01", 30.0), _row("b", "D01", 20.0), _row("b", "D01", 10.0, DAY + 1)]
    rows += [_row(f"p{i}", "D01", 5.0) for i in range(8)]
    batches.store(store, "visits", "b", rows)
    result = store.aggregate(QuerySpec("visits", MEASURES, ("district",)), top_n=2)
    assert [c.tops for c in result.cells] == [{"stay_hours": 60.0}]
    assert result.total.tops == {"stay_hours": 60.0}


@pytest.mark.parametrize(("n", "window"), [(1, False), (2, False), (3, True)])
def test_the_ranking_is_in_the_same_statement(store: SqlStore, n: int, window: bool) -> None:
    """The cells come from one statement (no per-subject row leaves the database): the top one
    and two through per-group maxima, three and more through a window function."""
    spec = QuerySpec("visits", MEASURES, ("district",))
    statements = compile_aggregate(spec, store._schema.datasets, top_n=n)
    text = str(statements.cells.compile(compile_kwargs={"literal_binds": True}))
    assert ("row_number() OVER (PARTITION BY" in text) == window
    assert ("row_number() OVER (ORDER BY" in str(statements.total)) == window


def _spread_rows() -> list[dict[str, Any]]:
    """Sixty people, each with a handful of short stays spread over three districts: no cell is
    anywhere near two people holding 85 % of its hours."""
    rnd = random.Random(7)
    return [
        _row(f"p{p}", d, rnd.randrange(4, 12) / 2)
        for p in range(60)
        for d in ("D01", "D02", "D03")
        if rnd.random() < 0.8
    ]


def test_far_from_dominance_the_bound_replaces_the_ranking(store: SqlStore, batches: Any) -> None:
    """With ``near_percent``, a query whose cells are all far from the rule gets the same subjects,
    records and sums as the exact ranking, and tops that bound the exact top-2 from above yet still
    show every cell (and the total) within 85 %."""
    rows = _spread_rows()
    batches.store(store, "visits", "b", rows)
    spec = QuerySpec("visits", MEASURES, ("district",))
    exact, bound = store.aggregate(spec, top_n=2), store.aggregate(spec, top_n=2, near_percent=85)
    assert [(c.key, c.subjects, c.records, dict(c.sums)) for c in bound.cells] == [
        (c.key, c.subjects, c.records, dict(c.sums)) for c in exact.cells
    ]
    assert (bound.total.subjects, bound.total.records, bound.total.sums) == (
        exact.total.subjects,
        exact.total.records,
        exact.total.sums,
    )
    pairs = [(b, e) for b, e in zip((*bound.cells, bound.total), (*exact.cells, exact.total), strict=True)]
    assert all(b.tops["stay_hours"] >= e.tops["stay_hours"] for b, e in pairs)
    assert any(b.tops["stay_hours"] > e.tops["stay_hours"] for b, e in pairs)  # the bound was used
    assert all(b.tops["stay_hours"] * 100 <= b.sums["stay_hours"] * 85 for b, _ in pairs)


def test_near_dominance_the_exact_ranking_is_used(store: SqlStore, batches: Any) -> None:
    """One heavy user in D01 puts that cell near the rule: with ``near_percent`` the answer is the
    exact ranking's, tops included, for every cell."""
    rows = [*_spread_rows(), *(_row("heavy", "D01", 72.0, DAY + i) for i in range(20))]
    batches.store(store, "visits", "b", rows)
    spec = QuerySpec("visits", MEASURES, ("district",))
    assert store.aggregate(spec, top_n=2, near_percent=85) == store.aggregate(spec, top_n=2)


def _clustered_rows(seed: int) -> list[dict[str, Any]]:
    """People with from one to a dozen records in a cell, values from 0 to 72 hours, some
    people in every district: a mix where the bound is sometimes close and sometimes loose."""
    rnd = random.Random(seed)
    rows = []
    for p in range(rnd.randrange(1, 30)):
        for d in rnd.sample(("D01", "D02", "D03"), rnd.randrange(1, 4)):
            hours = rnd.choice((0.0, rnd.randrange(0, 288) / 4))
            rows += [
                _row(f"p{p}", d, hours + rnd.randrange(0, 8), DAY + i) for i in range(rnd.randrange(1, 13))
            ]
    return rows


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("digest", [False, True])
def test_the_bound_is_never_below_the_exact_top_n(
    store: SqlStore, batches: Any, seed: int, digest: bool
) -> None:
    """At 100 % nothing is near the rule, so the bound is always what comes back: in every cell
    and the total its tops are at least the exact top-n, and every other figure (people digest
    and data version included) is the exact answer's."""
    batches.store(store, "visits", "b", _clustered_rows(seed))
    spec = QuerySpec("visits", MEASURES, ("district",))
    for n in (2, 3):
        exact = store.aggregate(spec, top_n=n, digest=digest)
        bound = store.aggregate(spec, top_n=n, digest=digest, near_percent=100)

        def without_tops(result: Any) -> list[Any]:
            return [
                (c.key, c.subjects, c.records, dict(c.sums), c.people) for c in (*result.cells, result.total)
            ]

        assert without_tops(bound) == without_tops(exact)
        assert bound.data_version == exact.data_version
        pairs = zip((*bound.cells, bound.total), (*exact.cells, exact.total), strict=True)
        assert all(b.tops["stay_hours"] >= e.tops["stay_hours"] for b, e in pairs)


def test_many_records_a_person_in_a_cell_leaves_the_bound_for_the_ranking(
    store: SqlStore, batches: Any
) -> None:
    """Ten people with twelve short stays each in D01 and nobody near the rule: the bound
    (records the top two could hold, times the longest stay) is over 85 % of the cell, so the
    answer is the exact ranking's, tops included."""
    rows = [_row(f"p{p}", "D01", 4.0 + p % 3, DAY + i) for p in range(10) for i in range(12)]
    batches.store(store, "visits", "b", rows)
    spec = QuerySpec("visits", MEASURES, ("district",))
    exact = store.aggregate(spec, top_n=2)
    assert exact.cells[0].tops["stay_hours"] * 100 < exact.cells[0].sums["stay_hours"] * 85
    assert store.aggregate(spec, top_n=2, near_percent=85) == exact
