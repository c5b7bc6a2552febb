"""Attacks on single answers, over real mTLS gRPC against a real store (SQLite and PostgreSQL):
each test plays an analyst trying to get a small cell or one person's value out of the gateway,
and shows what comes back does not give it (DESIGN §9 items 2-4 and 7)."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from e2e_harness import Row, Running, day, seal

from agents._pb import query_pb2

SUBJECTS = query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUBJECTS)
RECORDS = query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_RECORDS)
STAY = "length_of_stay_hours"
SUM = query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUM, field=STAY)
Values = list[tuple[bool, float]]  # (withheld, value) per measure


def visit(person: str, district: str, hours: float, *, sex: str = "F", age: str = "25-34", n: int = 0) -> Row:
    """One ED visit for an overdose in March 2025 (day 1 + n)."""
    dims = {"district": district, "age_band": age, "sex": sex, "presentation": "overdose"}
    return Row(person, day(f"2025-03-{1 + n % 28:02d}"), dims, {STAY: hours})


def push(running: Running, rows: Sequence[Row]) -> None:
    running.ingest("agent:health").PushBatch(seal(running.layout, "health", "ed_visits", rows))


def ask(
    running: Running,
    measures: Sequence[query_pb2.MeasureSpec],
    group_by: Sequence[str],
    filters: dict[str, list[str]],
) -> tuple[dict[tuple[str, ...], Values], Values]:
    result = running.query("health-analyst").Aggregate(
        query_pb2.AggregateRequest(
            agreement_id="ag-2026-001",
            purpose="overdose-prevention",
            dataset="ed_visits",
            measures=list(measures),
            group_by=list(group_by),
            filters=[query_pb2.ValueFilter(dimension=d, values=v) for d, v in filters.items()],
        )
    )
    cells = {tuple(c.key): [(v.withheld, v.value) for v in c.values] for c in result.cells}
    return cells, [(v.withheld, v.value) for v in result.total.values]


def test_a_sum_dominated_by_one_person_cannot_be_read_or_subtracted(running: Running) -> None:
    """One person's ten 72-hour stays dominate D01's length of stay: D01's count is released but
    its sum is withheld, and total minus the released sums is no estimate of that
    person's hours, because it also holds a whole other district's sum."""
    rows = [visit("heavy", "D01", 72.0, n=i) for i in range(10)]
    rows += [visit(f"a{i}", "D01", 1.0) for i in range(19)]
    rows += [visit(f"b{i}", "D02", 5.0) for i in range(30)]
    rows += [visit(f"c{i}", "D03", 6.0) for i in range(40)]
    push(running, rows)
    cells, total = ask(running, [SUBJECTS, SUM], ["district"], {"district": ["D01", "D02", "D03"]})
    assert cells[("D01",)][0] == (False, 20.0)  # 20 people: the count is no secret
    assert cells[("D01",)][1] == (True, 0.0)
    true_sums = {"D01": 720.0 + 19.0, "D02": 150.0, "D03": 240.0}
    hidden = [d for d in true_sums if cells[(d,)][1][0]]
    assert not total[1][0]  # the total's hours are released, so subtraction is the attack
    assert len(hidden) >= 2
    # what subtraction gives is the hidden districts together, where the top two people (the
    # heavy user's 720 hours and one other hour) hold at most 85 %
    together = sum(Fraction(true_sums[d]) for d in hidden)
    assert Fraction(720 + 1) * 100 <= together * 85


def test_many_records_of_one_person_do_not_make_a_cell_pass_k(running: Running) -> None:
    """Nine people, one of them with 40 visits, is 48 records but nine people: the cell is
    withheld whole (count, records and sum), exactly like an empty one."""
    rows = [visit("frequent", "D01", 2.0, n=i) for i in range(40)]
    rows += [visit(f"p{i}", "D01", 2.0) for i in range(8)]
    rows += [visit(f"q{i}", "D02", 2.0) for i in range(30)] + [visit(f"r{i}", "D03", 2.0) for i in range(30)]
    push(running, rows)
    cells, _ = ask(
        running, [SUBJECTS, RECORDS, SUM], ["district"], {"district": ["D01", "D02", "D03", "D04"]}
    )
    assert cells[("D01",)] == [(True, 0.0)] * 3
    assert cells[("D01",)] == cells[("D04",)]  # D04 held nobody


def test_a_homogeneous_group_is_not_given_away_by_its_empty_neighbours(running: Running) -> None:
    """All 15 people seen in D01 are women. Grouped by sex, the M and X cells are empty; they
    come back withheld like small ones, and the F cell is not released beside a total it
    equals (which would say: everyone here is a woman)."""
    push(running, [visit(f"o{i}", "D01", 3.0) for i in range(15)])
    cells, total = ask(running, [SUBJECTS], ["sex"], {"district": ["D01"]})
    assert set(cells) == {("F",), ("M",), ("X",)}  # every value of the catalogue, empty or not
    assert cells[("M",)] == cells[("X",)] == [(True, 0.0)]
    assert cells[("F",)][0][0] or total[0][0]


def test_a_fine_grouping_releases_no_cell_of_fewer_than_k_people(running: Running) -> None:
    """Three people per (age band, sex) in one district: grouped that finely every cell is small
    and none is released; only the district's total of 45 people (rounded) may be."""
    rows = [
        visit(f"{sex}{age}{i}", "D01", 2.0, sex=sex, age=age)
        for sex in ("F", "M", "X")
        for age in ("18-24", "25-34", "35-44", "45-54", "55-64")
        for i in range(3)
    ]
    push(running, rows)
    cells, total = ask(running, [SUBJECTS, SUM], ["age_band", "sex"], {"district": ["D01"]})
    assert len(cells) == 21
    assert all(values == [(True, 0.0), (True, 0.0)] for values in cells.values())
    assert total == [(False, 45.0), (False, 90.0)]


def test_probing_the_threshold_with_filters_gets_no_pair_to_subtract(running: Running) -> None:
    """D01 holds nine women and one man who stayed 72 hours in each of five visits. Asking for
    women only (nine: withheld) and then women and men (ten: released) gives no released pair
    to subtract; and the ten's sum, dominated by the man, is withheld as well."""
    rows = [visit(f"w{i}", "D01", 1.0) for i in range(9)]
    rows += [visit("man", "D01", 72.0, sex="M", n=i) for i in range(5)]
    rows += [visit(f"x{i}", "D02", 3.0) for i in range(20)]
    push(running, rows)
    women, _ = ask(running, [SUBJECTS, SUM], ["district"], {"district": ["D01", "D02"], "sex": ["F"]})
    both, _ = ask(running, [SUBJECTS, SUM], ["district"], {"district": ["D01", "D02"], "sex": ["F", "M"]})
    assert women[("D01",)] == [(True, 0.0), (True, 0.0)]
    assert both[("D01",)][0] == (False, 10.0)
    assert both[("D01",)][1] == (True, 0.0)


def test_a_withheld_cell_is_not_the_total_minus_the_released_ones(running: Running) -> None:
    """One small district (4 people) beside two large ones, total released: subtracting the
    released cells from the total never yields the small district alone, in people, records or
    hours."""
    rows = [visit(f"s{i}", "D01", 9.0) for i in range(4)]
    rows += [visit(f"m{i}", "D02", 2.0) for i in range(25)] + [visit(f"l{i}", "D03", 2.0) for i in range(50)]
    push(running, rows)
    cells, total = ask(running, [SUBJECTS, RECORDS, SUM], ["district"], {"district": ["D01", "D02", "D03"]})
    withheld = [key for key, values in cells.items() if values[0][0]]
    assert ("D01",) in withheld
    if not total[0][0]:
        assert len(withheld) >= 2  # the difference is D01 plus a district of 25 or 50 people
    for measure in range(3):
        if not total[measure][0]:
            assert sum(1 for values in cells.values() if values[measure][0]) >= 2
