"""Differencing attacks over the real gateway (gRPC, mutual TLS, real store): each pair or series of
queries would give a group of fewer than k = 10 people away by subtraction; the release ledger
withholds the cell that would complete it, while honest queries that isolate nobody still answer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import grpc
import pytest
from e2e_harness import Row, Running, day, ed_rows, seal, serve_with_terms, subjects_query

from agents._pb import audit_pb2, query_pb2
from gateway.server._release_locks import ReleaseLocks

ALL = [f"D{i:02d}" for i in range(1, 21)]


def _push(running: Running, *groups: list[Row]) -> None:
    stub = running.ingest("agent:health")
    for rows in groups:
        stub.PushBatch(seal(running.layout, "health", "ed_visits", rows))


def _total(running: Running, **fields: object) -> tuple[bool, float]:
    """(withheld, value) of the total of a distinct-subject count; fields as subjects_query's."""
    messages = {name: fields.pop(name) for name in ("months", "link") if name in fields}
    request = subjects_query(**fields)
    for name, message in messages.items():
        getattr(request, name).CopyFrom(message)
    result = running.query("health-analyst").Aggregate(request)
    value = result.total.values[0]
    return value.withheld, value.value


def _districts(values: list[str]) -> list[query_pb2.ValueFilter]:
    return [query_pb2.ValueFilter(dimension="district", values=values)]


def _months(first: str, last: str) -> query_pb2.MonthRange:
    return query_pb2.MonthRange(first=first, last=last)


def test_all_districts_then_all_but_a_small_one_withholds_the_second(running: Running) -> None:
    """Everyone, then everyone outside a district of three people: the second total is withheld."""
    _push(running, ed_rows("D01", 30), ed_rows("D02", 25), ed_rows("D03", 3))
    assert _total(running) == (False, 60)
    assert _total(running, filters=_districts([d for d in ALL if d != "D03"])) == (True, 0)


def test_a_filter_then_a_narrower_one_withholds_it_when_the_gap_is_small(running: Running) -> None:
    """With a filter on both sides ({D01,D02,D03} then {D01,D02}), the narrower total is withheld
    when the dropped district holds fewer than k people."""
    _push(running, ed_rows("D01", 30), ed_rows("D02", 25), ed_rows("D03", 4))
    assert _total(running, filters=_districts(["D01", "D02", "D03"])) == (False, 60)
    assert _total(running, filters=_districts(["D01", "D02"])) == (True, 0)


def test_dropping_a_large_district_still_answers(running: Running) -> None:
    """The honest counterpart: leaving out a district of thirty people isolates nobody."""
    _push(running, ed_rows("D01", 30), ed_rows("D02", 25), ed_rows("D03", 3))
    assert _total(running) == (False, 60)
    assert _total(running, filters=_districts([d for d in ALL if d != "D01"])) == (False, 30)


def test_tracker_padding_set_cannot_isolate_the_small_district(running: Running) -> None:
    """A tracker: {D01,D02} then {D02} (D01 holds three people) gives D01 by subtraction, so the
    second is withheld; asking in the other order withholds the padded one instead."""
    _push(running, ed_rows("D01", 3), ed_rows("D02", 40), ed_rows("D04", 3), ed_rows("D05", 40))
    assert _total(running, filters=_districts(["D01", "D02"])) == (False, 45)
    assert _total(running, filters=_districts(["D02"])) == (True, 0)
    assert _total(running, filters=_districts(["D05"])) == (False, 40)
    assert _total(running, filters=_districts(["D04", "D05"])) == (True, 0)


def test_an_empty_difference_is_treated_like_a_small_one(running: Running) -> None:
    """Adding a district that holds nobody ({D02} then {D02,D03}) is withheld too: answering only
    when the difference is empty would tell the analyst that it is."""
    _push(running, ed_rows("D02", 40))
    assert _total(running, filters=_districts(["D02"])) == (False, 40)
    assert _total(running, filters=_districts(["D02", "D03"])) == (True, 0)


def test_repeating_or_rewording_the_same_query_answers_the_same(running: Running) -> None:
    """The same people asked again (every district spelled out, in another order) answer alike:
    nothing new is given away, so nothing is withheld; leaving out the empty districts is not the
    same description, and the empty difference withholds it."""
    _push(running, ed_rows("D01", 30), ed_rows("D02", 3))
    assert _total(running) == (False, 35)
    assert _total(running, filters=_districts(ALL[::-1])) == (False, 35)
    assert _total(running) == (False, 35)
    assert _total(running, filters=_districts(["D02", "D01"])) == (True, 0)  # the other 18: nobody


def test_a_total_minus_the_cells_of_earlier_queries_is_withheld(running: Running) -> None:
    """Cells by district from two earlier queries, then the grand total: the total minus every
    released cell would be the small district D05, so the total is withheld."""
    _push(running, ed_rows("D01", 20), ed_rows("D02", 20), ed_rows("D03", 20), ed_rows("D04", 20))
    _push(running, ed_rows("D05", 4))
    stub = running.query("health-analyst")
    first = stub.Aggregate(subjects_query(group_by=["district"], filters=_districts(["D01", "D02"])))
    second = stub.Aggregate(subjects_query(group_by=["district"], filters=_districts(["D03", "D04"])))
    assert [c.values[0].withheld for c in (*first.cells, *second.cells)] == [False] * 4
    assert _total(running) == (True, 0)


def test_cells_after_a_released_total_that_would_leave_a_small_rest_are_withheld(running: Running) -> None:
    """The grand total first, then cells for every district but a small one: the cells (whose sum
    the total minus would give the small district) are withheld, every one alike."""
    _push(running, ed_rows("D01", 20), ed_rows("D02", 20), ed_rows("D05", 4))
    assert _total(running) == (False, 45)
    result = running.query("health-analyst").Aggregate(
        subjects_query(group_by=["district"], filters=_districts(["D01", "D02"]))
    )
    assert all(c.values[0].withheld for c in result.cells)
    assert result.total.values[0].withheld


def test_margins_that_leave_a_large_rest_still_answer(running: Running) -> None:
    """The honest counterpart: when the districts not asked for hold many people, the total and
    the cells of the earlier queries are all released."""
    _push(running, ed_rows("D01", 20), ed_rows("D02", 20), ed_rows("D05", 25))
    stub = running.query("health-analyst")
    first = stub.Aggregate(subjects_query(group_by=["district"], filters=_districts(["D01", "D02"])))
    assert [c.values[0].withheld for c in first.cells] == [False, False]
    assert _total(running) == (False, 65)


def test_a_grid_then_its_own_total_by_another_route_answers(running: Running) -> None:
    """Cells covering every district, then the grand total: the cells cover it by description, so
    the total minus them is empty whatever the data and the total is released."""
    _push(running, ed_rows("D01", 20), ed_rows("D02", 20))
    first = running.query("health-analyst").Aggregate(subjects_query(group_by=["district"]))
    assert first.total.values[0].withheld is False
    assert _total(running) == (False, 40)


def test_overlapping_month_ranges_cannot_isolate_a_small_month(running: Running) -> None:
    """January to March, then February to March, with two people seen only in January: the
    second total is withheld; with fifteen such people it is answered."""
    _push(running, ed_rows("D01", 2, month="2025-01", prefix="jan"), ed_rows("D01", 30, month="2025-02"))
    assert _total(running, months=_months("2025-01", "2025-03")) == (False, 30)
    assert _total(running, months=_months("2025-02", "2025-03")) == (True, 0)
    _push(running, ed_rows("D02", 15, month="2025-04", prefix="apr"), ed_rows("D02", 30, month="2025-05"))
    assert _total(running, months=_months("2025-04", "2025-06")) == (False, 45)
    assert _total(running, months=_months("2025-05", "2025-06")) == (False, 30)


def _police(people: list[str], on: str, incident_type: str = "drugs") -> list[Row]:
    dims = {"district": "D05", "age_band": "25-34", "sex": "F", "incident_type": incident_type}
    return [Row(p, day(on), dims) for p in people]


def _link(*filters: query_pb2.ValueFilter) -> query_pb2.Link:
    return query_pb2.Link(dataset="police_incidents", days_before=30, filters=list(filters))


def test_a_link_cannot_isolate_the_few_without_a_police_contact(running: Running) -> None:
    """All 30 people, then those of them with a police contact (28): the linked total would give
    away the two without one, so it is withheld."""
    ed = ed_rows("D05", 30, month="2025-03", prefix="p")
    _push(running, ed)
    police = _police([f"pD05-{i}" for i in range(28)], "2025-02-20")
    running.ingest("agent:metro-police").PushBatch(
        seal(running.layout, "metro-police", "police_incidents", police)
    )
    assert _total(running) == (False, 30)
    assert _total(running, link=_link()) == (True, 0)


def test_a_link_filter_cannot_isolate_one_person_with_another_incident_type(running: Running) -> None:
    """Linked to any police contact (25 people), then to drug incidents only (24): the second
    would single out the one person whose contact was of another type, so it is withheld; the
    honest counterpart (ten such people) is answered."""
    _push(running, ed_rows("D05", 40, month="2025-03", prefix="p"))
    police = _police([f"pD05-{i}" for i in range(24)], "2025-02-20")
    police += _police(["pD05-24"], "2025-02-20", incident_type="theft")
    running.ingest("agent:metro-police").PushBatch(
        seal(running.layout, "metro-police", "police_incidents", police)
    )
    drugs = query_pb2.ValueFilter(dimension="incident_type", values=["drugs"])
    assert _total(running, link=_link()) == (False, 25)
    assert _total(running, link=_link(drugs)) == (True, 0)


def test_a_link_filter_that_leaves_many_out_still_answers(running: Running) -> None:
    """Linked to any contact (34 people), then to drug incidents (24): ten people apart, released."""
    _push(running, ed_rows("D05", 40, month="2025-03", prefix="p"))
    police = _police([f"pD05-{i}" for i in range(24)], "2025-02-20")
    police += _police([f"pD05-{i}" for i in range(24, 34)], "2025-02-20", incident_type="theft")
    running.ingest("agent:metro-police").PushBatch(
        seal(running.layout, "metro-police", "police_incidents", police)
    )
    drugs = query_pb2.ValueFilter(dimension="incident_type", values=["drugs"])
    assert _total(running, link=_link()) == (False, 35)
    assert _total(running, link=_link(drugs)) == (False, 25)


def test_withheld_by_the_ledger_looks_like_any_withheld_cell(running: Running) -> None:
    """A cell withheld because of an earlier release carries no reason and no count: the same
    marker as a small cell, and the disclosure metadata holds no figure of the difference."""
    _push(running, ed_rows("D01", 30), ed_rows("D02", 25), ed_rows("D03", 3))
    _total(running)
    result = running.query("health-analyst").Aggregate(
        subjects_query(group_by=["district"], filters=_districts(["D01", "D02"]))
    )
    assert result.total.values[0].withheld and result.total.values[0].value == 0
    fields = {f.name for f, _ in result.disclosure.ListFields()}
    assert fields <= {"k", "round_to", "cells_withheld", "decision_id", "policy_revision", "agreement_id"}
    assert result.disclosure.cells_withheld == 2  # the two grid cells; the total is not counted


def test_a_query_nested_in_too_many_released_cells_is_refused_in_plain_words(running: Running) -> None:
    """A district-by-month grid of 80 released cells, then the same grid through a link: checking
    80 differences exactly would scan the table again and again, so the query is refused with a
    reason that names the agreement and the limit and carries no count of people; the audit log
    records the deny with the same reason."""
    months = ["2025-01", "2025-02", "2025-03", "2025-04"]
    _push(running, *(ed_rows(d, 10, month=m, prefix=m) for d in ALL for m in months))
    police = [
        row for m in months for d in ALL for row in _police([f"{m}{d}-{p}" for p in range(10)], f"{m}-01")
    ]
    running.ingest("agent:metro-police").PushBatch(
        seal(running.layout, "metro-police", "police_incidents", police)
    )
    plain = subjects_query(group_by=["district", "month"])
    plain.months.CopyFrom(_months("2025-01", "2025-04"))
    first = running.query("health-analyst").Aggregate(plain)
    assert sum(not c.values[0].withheld for c in first.cells) == 80
    linked = subjects_query(group_by=["district", "month"])
    linked.months.CopyFrom(_months("2025-01", "2025-04"))
    linked.link.CopyFrom(_link())
    with pytest.raises(grpc.RpcError) as refused:
        running.query("health-analyst").Aggregate(linked)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    details = refused.value.details() or ""
    assert "overlap cells released earlier under ag-2026-001" in details
    assert "(64)" in details and "80" not in details
    decisions = list(running.audit().ListDecisions(audit_pb2.ListDecisionsRequest()))
    last = [d for d in decisions if d.action == "query"][-1]
    assert last.outcome == "deny"
    assert list(last.reasons) == [details]


def test_rows_of_an_older_contract_cannot_be_isolated_by_listing_every_current_value(
    running: Running,
) -> None:
    """Three people kept with a district the current contract no longer has: "no filter" and
    "every current district" must count the same people (the ledger takes them as one cell), so
    neither answer includes them and their difference gives nothing away."""
    _push(running, ed_rows("D01", 30))
    fresh = (
        "randomblob(32)"
        if running.backend == "sqlite"
        else "decode(md5(random()::text) || md5(random()::text), 'hex')"
    )
    running.sql(
        *(
            "INSERT INTO ds_ed_visits (batch_id, subject, event_day, event_month, district, age_band, sex,"
            f" presentation, length_of_stay_hours) SELECT batch_id, {fresh}, event_day, event_month, 'D99',"
            " age_band, sex, presentation, length_of_stay_hours FROM ds_ed_visits LIMIT 1"
            for _ in range(3)
        )
    )
    assert _total(running) == (False, 30)
    assert _total(running, filters=_districts(ALL)) == (False, 30)


def test_asking_again_after_a_few_newcomers_cannot_single_them_out(running: Running) -> None:
    """A total released, then three more people stored, then the same question: the difference
    would be those three, so the second answer is withheld; once ten more have arrived since the
    last release it is answered again, and asking once more with no new data answers the same."""
    _push(running, ed_rows("D01", 30))
    assert _total(running) == (False, 30)
    _push(running, ed_rows("D01", 3, prefix="late"))
    assert _total(running) == (True, 0)
    _push(running, ed_rows("D01", 10, prefix="later"))
    assert _total(running) == (False, 45)  # 43 people, rounded to 5
    assert _total(running) == (False, 45)


def test_returning_people_cannot_pad_a_few_newcomers_up_to_k(running: Running) -> None:
    """A total of thirty released, then a batch where seven of them come back (another visit) with
    three new people: the answer would grow by the three alone, so asking again is withheld. The
    returning seven are not new to the cell and must not count toward k."""
    _push(running, ed_rows("D01", 30))
    assert _total(running) == (False, 30)
    returning = [Row(r.person, r.event_day + 5, r.dims, r.measures) for r in ed_rows("D01", 7)]
    _push(running, returning + ed_rows("D01", 3, prefix="new"))
    assert _total(running) == (True, 0)


def test_people_stored_while_an_answer_is_checked_are_newcomers_when_asked_again(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three people stored after the aggregate read the data, before its audit entry and ledger
    rows were written, were not in the answer: asked again, the difference would be those three,
    so the second answer is withheld as if they had come after the first answer."""
    _push(running, ed_rows("D01", 30))
    store = running.gateway.shared.store
    read = store.aggregate
    late: list[int] = []

    def read_then_store_late(*args: Any, **kwargs: Any) -> Any:
        raw = read(*args, **kwargs)
        if not late:  # the first answer only: between its read and its audit entry
            late.append(3)
            _push(running, ed_rows("D01", 3, prefix="late"))
        return raw

    monkeypatch.setattr(store, "aggregate", read_then_store_late)
    assert _total(running) == (False, 30)
    assert late and running.stored_rows("ed_visits") == 33
    assert _total(running) == (True, 0)


def test_people_stored_while_an_answer_is_checked_do_not_hide_a_small_difference(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """{D01} released, then {D01,D02} asked, with D02 holding three people when the aggregate
    reads and ten more stored before the ledger counts the difference: the answer minus {D01}
    would be the three, so it is withheld. The checks count the data the answer read, not the
    data stored since (fourteen people would have let it through)."""
    _push(running, ed_rows("D01", 30), ed_rows("D02", 3))
    assert _total(running, filters=_districts(["D01"])) == (False, 30)
    store = running.gateway.shared.store
    read = store.aggregate
    late: list[int] = []

    def read_then_store_late(*args: Any, **kwargs: Any) -> Any:
        raw = read(*args, **kwargs)
        if not late:
            late.append(10)
            _push(running, ed_rows("D02", 10, prefix="late"))
        return raw

    monkeypatch.setattr(store, "aggregate", read_then_store_late)
    assert _total(running, filters=_districts(["D01", "D02"])) == (True, 0)
    assert late and running.stored_rows("ed_visits") == 43


def test_two_repeats_racing_across_a_late_batch_are_not_both_released(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """D01 released with 30 people, 10 more stored. A asks again and reads 40 people and the
    ledger; then 3 more are stored and B asks again and is answered (13 newcomers since the 30).
    A's ledger write must not pass: a repeat inserts no ledger row, only moves its release
    watermark, and had A been released too, its 40 beside B's 43 would give the three away.
    A is checked again against B's write and withheld, as the two asked one after the other.
    (B runs as from a second gateway process on the same database: one process takes its
    releases of an agreement in turn, so the in-process release lock is lifted here.)"""
    _push(running, ed_rows("D01", 30))
    assert _total(running, filters=_districts(["D01"])) == (False, 30)
    _push(running, ed_rows("D01", 10, prefix="more"))
    monkeypatch.setattr(ReleaseLocks, "hold", lambda _self, _agreement, _dataset: nullcontext())
    store = running.gateway.shared.store
    read_ledger = store.release_ledger
    racing: list[tuple[bool, float]] = []

    def read_then_race(*args: Any, **kwargs: Any) -> Any:
        ledger = read_ledger(*args, **kwargs)
        if not racing:  # A's first check only: B runs to the end between A's read and its write
            racing.append((True, -1.0))
            _push(running, ed_rows("D01", 3, prefix="late"))
            racing[0] = _total(running, filters=_districts(["D01"]))
        return ledger

    monkeypatch.setattr(store, "release_ledger", read_then_race)
    first = _total(running, filters=_districts(["D01"]))
    assert racing == [(False, 45)]  # B: 43 people, rounded to 5
    assert first == (True, 0)  # A: its 40 beside B's 43 would isolate the late three


def test_asking_again_after_one_newcomer_in_a_linked_cell_is_withheld(running: Running) -> None:
    """The same with a link: one more person with a police contact cannot be isolated by asking
    the linked question again."""
    _push(running, ed_rows("D05", 30, month="2025-03", prefix="p"))
    police = _police([f"pD05-{i}" for i in range(30)], "2025-02-20")
    running.ingest("agent:metro-police").PushBatch(
        seal(running.layout, "metro-police", "police_incidents", police)
    )
    assert _total(running, link=_link()) == (False, 30)
    _push(running, ed_rows("D05", 1, month="2025-03", prefix="q"))
    running.ingest("agent:metro-police").PushBatch(
        seal(running.layout, "metro-police", "police_incidents", _police(["qD05-0"], "2025-02-21"))
    )
    assert _total(running, link=_link()) == (True, 0)


# -- sums: a difference of two released sums is itself a sum, and may be dominated ----------------

STAY = "length_of_stay_hours"


def _stays(district: str, people: int, hours: float, prefix: str = "", visits_each: int = 1) -> list[Row]:
    rows = ed_rows(district, people, visits_each=visits_each, prefix=prefix)
    return [Row(r.person, r.event_day, r.dims, {STAY: hours}) for r in rows]


def _sum_total(running: Running, districts: list[str]) -> tuple[bool, bool]:
    """(count withheld, sum withheld) of the total over ``districts``."""
    request = subjects_query(filters=_districts(districts))
    request.measures.append(query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUM, field=STAY))
    values = running.query("health-analyst").Aggregate(request).total.values
    return values[0].withheld, values[1].withheld


def test_a_dominated_sum_cannot_be_had_as_the_difference_of_two_released_sums(running: Running) -> None:
    """D01 holds twelve people, one of whom stayed 72 hours ten times: asked directly its sum is
    withheld. {D01,D02} then {D02} would give it by subtraction (twelve people apart, so the
    people check passes): the second sum is withheld too."""
    _push(running, _stays("D01", 1, 72.0, prefix="heavy", visits_each=10), _stays("D01", 11, 1.0))
    _push(running, _stays("D02", 30, 5.0))
    assert _sum_total(running, ["D01"]) == (False, True)  # the rule itself, asked directly
    assert _sum_total(running, ["D01", "D02"]) == (False, False)
    assert _sum_total(running, ["D02"])[1] is True


def test_a_difference_of_sums_spread_over_many_people_still_answers(running: Running) -> None:
    """The honest counterpart: when D01's hours are spread evenly, {D01,D02} then {D02} both
    release their sums."""
    _push(running, _stays("D01", 12, 4.0), _stays("D02", 30, 5.0))
    assert _sum_total(running, ["D01", "D02"]) == (False, False)
    assert _sum_total(running, ["D02"]) == (False, False)


# -- inclusion and exclusion over overlapping, non-nested value sets ------------------------------


def test_two_overlapping_sets_and_their_union_cannot_give_the_overlap_away(running: Running) -> None:
    """{D01,D02} and {D02,D03} overlap in D02 (four people) and neither holds the other; their
    union {D01,D02,D03} would give |D02| = |A| + |B| - |A u B|, so the union is withheld."""
    _push(running, ed_rows("D01", 20), ed_rows("D02", 4), ed_rows("D03", 20))
    assert _total(running, filters=_districts(["D01", "D02"]))[0] is False
    assert _total(running, filters=_districts(["D02", "D03"]))[0] is False
    assert _total(running, filters=_districts(["D01", "D02", "D03"]))[0] is True


def test_the_union_first_then_two_overlapping_sets_withholds_the_second(running: Running) -> None:
    """The same three totals in another order: the union, then {D01,D02}, then {D02,D03}; the
    last completes the inclusion-exclusion and is withheld."""
    _push(running, ed_rows("D01", 20), ed_rows("D02", 4), ed_rows("D03", 20))
    assert _total(running, filters=_districts(["D01", "D02", "D03"]))[0] is False
    assert _total(running, filters=_districts(["D01", "D02"]))[0] is False
    assert _total(running, filters=_districts(["D02", "D03"]))[0] is True


def test_overlapping_month_ranges_and_their_union_cannot_give_a_small_month_away(running: Running) -> None:
    """January-February and February-March overlap in February (three people); January-March
    after both is withheld."""
    _push(running, ed_rows("D01", 20, month="2025-01", prefix="jan"))
    _push(running, ed_rows("D01", 3, month="2025-02", prefix="feb"))
    _push(running, ed_rows("D01", 20, month="2025-03", prefix="mar"))
    assert _total(running, months=_months("2025-01", "2025-02"))[0] is False
    assert _total(running, months=_months("2025-02", "2025-03"))[0] is False
    assert _total(running, months=_months("2025-01", "2025-03"))[0] is True


def test_overlapping_sets_with_a_large_overlap_still_answer(running: Running) -> None:
    """The honest counterpart: an overlap of fifteen people isolates nobody, and all three
    totals are released; so is a by-district grid after a by-month one (cells overlap, but no
    union of two of them was released)."""
    _push(running, ed_rows("D01", 20), ed_rows("D02", 15), ed_rows("D03", 20))
    assert _total(running, filters=_districts(["D01", "D02"]))[0] is False
    assert _total(running, filters=_districts(["D02", "D03"]))[0] is False
    assert _total(running, filters=_districts(["D01", "D02", "D03"]))[0] is False


def test_a_grid_by_month_after_a_grid_by_district_answers(running: Running) -> None:
    """Cells by district and then cells by month overlap pairwise, but no two of them and their
    union were released: nothing is derivable, and the second grid is released."""
    _push(running, ed_rows("D01", 20, month="2025-01", prefix="a"), ed_rows("D02", 20, month="2025-01"))
    _push(running, ed_rows("D01", 20, month="2025-02", prefix="b"), ed_rows("D02", 20, month="2025-02"))
    stub = running.query("health-analyst")
    both = _districts(["D01", "D02"])
    first = subjects_query(group_by=["district"], filters=both)
    first.months.CopyFrom(_months("2025-01", "2025-02"))
    assert [c.values[0].withheld for c in stub.Aggregate(first).cells] == [False, False]
    second = subjects_query(group_by=["month"], filters=both)
    second.months.CopyFrom(_months("2025-01", "2025-02"))
    second = stub.Aggregate(second)
    assert [c.values[0].withheld for c in second.cells] == [False, False]


# -- asking a linked question again after only the linked dataset changed ------------------------


def test_asking_a_linked_question_again_after_new_linked_records_only_is_withheld(running: Running) -> None:
    """Thirty people with a police contact and one without; the linked total, then one police
    record for the thirty-first (no new ED record at all), then the linked total again: the
    difference is that one person, so it is withheld; ten more such people later, it answers."""
    _push(running, ed_rows("D05", 41, month="2025-03", prefix="p"))
    police = running.ingest("agent:metro-police")
    police.PushBatch(
        seal(
            running.layout,
            "metro-police",
            "police_incidents",
            _police([f"pD05-{i}" for i in range(30)], "2025-02-20"),
        )
    )
    assert _total(running, link=_link()) == (False, 30)
    police.PushBatch(
        seal(running.layout, "metro-police", "police_incidents", _police(["pD05-30"], "2025-02-21"))
    )
    assert _total(running, link=_link()) == (True, 0)
    police.PushBatch(
        seal(
            running.layout,
            "metro-police",
            "police_incidents",
            _police([f"pD05-{i}" for i in range(31, 41)], "2025-02-22"),
        )
    )
    assert _total(running, link=_link()) == (False, 40)


def test_a_grid_by_district_and_month_then_by_district_alone_answers(running: Running) -> None:
    """The everyday follow-up: cells by district and month over six months, then by district
    alone over the same months. Each district's cell contains six released ones (120 pairs to
    compare, more than one statement's worth of separate counts), and every difference holds
    many people: the second grid is answered, not refused."""
    for month in ("2025-01", "2025-02", "2025-03", "2025-04", "2025-05", "2025-06"):
        _push(running, *(ed_rows(d, 12, month=month, prefix=f"{month}-") for d in ALL))
    stub = running.query("health-analyst")
    six = _months("2025-01", "2025-06")
    first = subjects_query(group_by=["district", "month"])
    first.months.CopyFrom(six)
    assert not any(c.values[0].withheld for c in stub.Aggregate(first).cells)
    second = subjects_query(group_by=["district"])
    second.months.CopyFrom(six)
    answer = stub.Aggregate(second)
    assert len(answer.cells) == 20
    assert not any(c.values[0].withheld for c in answer.cells)


def test_racing_questions_under_one_agreement_are_all_answered(running: Running) -> None:
    """Eight analysts' questions at once, each adding cells to the agreement's ledger: a release
    checked against a ledger another one grew meanwhile is checked again inside the gateway, so
    every question is answered, none sent back with UNAVAILABLE, and each has its audit entry."""
    _push(running, *(ed_rows(d, 15) for d in ALL[:8]))
    stub = running.query("health-analyst")

    def ask(district: str) -> bool:
        result = stub.Aggregate(subjects_query(filters=_districts([district])))
        return result.total.values[0].withheld

    with ThreadPoolExecutor(max_workers=8) as pool:
        withheld = list(pool.map(ask, ALL[:8]))
    assert withheld == [False] * 8
    entries = running.audit("auditor").ListDecisions(audit_pb2.ListDecisionsRequest(outcome="allow"))
    assert sum(1 for e in entries if e.action == "query") == 8


def test_a_district_asked_again_over_two_months_cannot_give_its_first_timers(running: Running) -> None:
    """Cells by district and month (January, February), then by district over both months: in
    D01 five of its thirty people came only in February, so the D01 cell minus the released D01
    January cell would be those five. The D01 cell is withheld; the other districts, whose
    differences hold twelve people each, are answered but for the one secondary suppression
    withholds beside D01 (else the total would give D01 back)."""
    for d in ALL:
        if d == "D01":
            _push(running, ed_rows(d, 25, month="2025-01"), ed_rows(d, 30, month="2025-02"))
        else:
            _push(running, ed_rows(d, 12, month="2025-01", prefix="j"), ed_rows(d, 12, month="2025-02"))
    stub = running.query("health-analyst")
    two = _months("2025-01", "2025-02")
    first = subjects_query(group_by=["district", "month"])
    first.months.CopyFrom(two)
    grid = {tuple(c.key): c.values[0] for c in stub.Aggregate(first).cells}
    assert (grid[("D01", "2025-01")].withheld, grid[("D01", "2025-01")].value) == (False, 25)
    second = subjects_query(group_by=["district"])
    second.months.CopyFrom(two)
    cells = {tuple(c.key): c.values[0] for c in stub.Aggregate(second).cells}
    assert cells[("D01",)].withheld  # 30 - 25 would be the five first-timers
    assert sum(cells[(d,)].withheld for d in ALL[1:]) == 1


def test_newcomers_cannot_be_had_from_a_new_union_of_cells_released_before_they_came(
    running: Running,
) -> None:
    """Cells by district released, then five more people stored in D01, then {D01, D02} asked
    for the first time: every difference counted on today's data holds twenty people or more,
    but the new total minus the two cells as released before would be the five newcomers. The
    new total is withheld, as asking D01 itself again would be."""
    _push(running, *(ed_rows(d, 30 if d == "D01" else 20) for d in ALL))
    stub = running.query("health-analyst")
    cells = {tuple(c.key): c.values[0] for c in stub.Aggregate(subjects_query(group_by=["district"])).cells}
    assert [(cells[(d,)].withheld, cells[(d,)].value) for d in ("D01", "D02")] == [(False, 30), (False, 20)]
    _push(running, ed_rows("D01", 5, prefix="late"))
    assert _total(running, filters=_districts(["D01", "D02"])) == (True, 0)  # not 55 = 30 + 20 + 5


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_district_dropped_by_a_reload_cannot_be_isolated_by_listing_every_current_value(
    backend: str, pki: Any, tmp_path: Path
) -> None:
    """D20 holds three people; a policy reload drops D20 from the district domain. "No filter" and
    "every current district" are then one ledger cell, so they must count the same people, and a
    grid by district must still answer."""
    for running in serve_with_terms(backend, pki, tmp_path, ""):
        _push(running, *(ed_rows(d, 20) for d in ALL[:-1]), ed_rows("D20", 3))
        catalogue = tmp_path / "bundle" / "catalogue" / "data.yaml"
        catalogue.write_text(catalogue.read_text().replace(", D19, D20]", ", D19]"))
        assert running.gateway.reload_policy().status == "reloaded"
        first = _total(running)
        assert first == _total(running, filters=_districts(ALL[:-1]))
        result = running.query("health-analyst").Aggregate(subjects_query(group_by=["district"]))
        assert len(result.cells) == 19


def test_a_long_grid_of_sums_asked_again_by_district_answers(running: Running) -> None:
    """Sums by district and month over five years (1,200 cells), then by district alone: each
    district's cell holds sixty released ones, every difference holds many people and no one
    dominates, so the second grid is answered (its sixty-odd hundred checks are all one-part
    checks of disjoint parts, answered together), not failed on a statement too wide to run."""
    months = [f"{y}-{m:02d}" for y in range(2020, 2025) for m in range(1, 13)]
    rows = [
        Row(r.person, r.event_day, r.dims, {STAY: 4.0})
        for d in ALL
        for month in months
        for r in ed_rows(d, 10, month=month, prefix=f"{month}-")
    ]
    _push(running, rows)
    stub = running.query("health-analyst")

    def grid(*group_by: str) -> query_pb2.AggregateRequest:
        request = subjects_query(group_by=list(group_by))
        request.measures.append(query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUM, field=STAY))
        request.months.CopyFrom(_months(months[0], months[-1]))
        return request

    first = stub.Aggregate(grid("district", "month"))
    assert len(first.cells) == 1200 and not any(v.withheld for c in first.cells for v in c.values)
    second = stub.Aggregate(grid("district"))
    assert len(second.cells) == 20 and not any(v.withheld for c in second.cells for v in c.values)
