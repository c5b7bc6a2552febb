"""The release ledger in the database: rows written with the audit entry or not at all, a racing
release detected, and the differencing counts exact distinct-subject counts (links included)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.audit._types import AuditDraft
from gateway.disclosure._ledger import CellPredicate, Check, LinkPredicate
from gateway.errors import AuditWriteError
from gateway.query import LinkSpec, MeasureRef, QuerySpec
from gateway.store import SqlStore
from gateway.store._ledger import LedgerMoved, LedgerWrite

DAY = 20_000
AT = "2026-03-01T09:59:59.000000Z"  # a data watermark, as an answer carries one


def _draft(decision_id: str) -> AuditDraft:
    return AuditDraft(
        decision_id=decision_id,
        timestamp="2026-03-01T10:00:00.000000Z",
        path="datashare/query/decision",
        principal="spiffe://consortium.example/agency/health/analyst/a",
        agency="health",
        action="query",
        outcome="allow",
        agreement_id="ag-1",
    )


def _visit(subject: str, district: str, day: int = DAY) -> dict[str, Any]:
    return {
        "subject": subject,
        "event_day": day,
        "district": district,
        "age_band": "65+",
        "sex": "F",
        "presentation": "other",
        "stay_hours": 1.0,
    }


LINK = LinkPredicate("contacts", 30, 0)
LINKED_PEOPLE = QuerySpec("visits", (MeasureRef("subjects"),), (), link=LinkSpec("contacts", 30, 0))


def _contacts(n: int) -> list[dict[str, Any]]:
    """Police contacts of a0..a<n-1>, five days before DAY: within LINK's window."""
    return [
        {"subject": f"a{i}", "event_day": DAY - 5, "district": "D01", "incident_type": "other"}
        for i in range(n)
    ]


def _released(store: SqlStore, predicate: CellPredicate, spec: QuerySpec) -> tuple[str, str]:
    """Release ``predicate`` from an answer to ``spec`` read now: the ledger's (cell, time)."""
    answer = store.aggregate(spec)
    write = LedgerWrite("ag-1", "visits", "dec-1", 0, ((predicate, {"subjects": 1.0}),), answer.watermark)
    store.append_audit(_draft("dec-1"), ledger=write)
    (cell,), _ = store.release_ledger("ag-1", "visits")
    return cell.predicate, cell.released_at


def _p(*districts: str, link: LinkPredicate | None = None) -> CellPredicate:
    return CellPredicate("visits", (("district", districts),) if districts else (), None, link)


def test_ledger_rows_are_written_with_the_audit_entry(store: SqlStore) -> None:
    """An allowed release's cells are in the ledger after its audit entry; the same cell again adds no row."""
    write = LedgerWrite(
        "ag-1", "visits", "dec-1", 0, ((_p("D01"), {"subjects": 15.0}), (_p(), {"subjects": 40.0})), AT
    )
    store.append_audit(_draft("dec-1"), ledger=write)
    cells, seen = store.release_ledger("ag-1", "visits")
    assert {c.predicate for c in cells} == {_p("D01"), _p()} and seen > 0
    again = LedgerWrite("ag-1", "visits", "dec-2", seen, ((_p("D01"), {"subjects": 15.0}),), AT)
    store.append_audit(_draft("dec-2"), ledger=again)
    assert store.release_ledger("ag-1", "visits") == (cells, seen)
    assert store.release_ledger("ag-2", "visits") == ((), 0)


def test_a_release_checked_against_an_older_ledger_writes_nothing(store: SqlStore) -> None:
    """If another release grew the ledger after the check, neither the entry nor its cells are written."""
    store.append_audit(
        _draft("dec-1"), ledger=LedgerWrite("ag-1", "visits", "dec-1", 0, ((_p("D01"), {}),), AT)
    )
    stale = LedgerWrite("ag-1", "visits", "dec-2", 0, ((_p("D02"), {}),), AT)
    with pytest.raises(LedgerMoved):
        store.append_audit(_draft("dec-2"), ledger=stale)
    assert [e.decision_id for e in store.audit_entries()] == ["dec-1"]
    assert [c.predicate for c in store.release_ledger("ag-1", "visits")[0]] == [_p("D01")]


def test_a_release_checked_before_a_racing_repeat_writes_nothing(store: SqlStore) -> None:
    """A repeat of released cells adds no row, only moves their release watermark: a release
    checked before such a repeat was written is refused all the same, and nothing is written."""
    first = LedgerWrite("ag-1", "visits", "dec-1", 0, ((_p("D01"), {"subjects": 30.0}),), AT)
    store.append_audit(_draft("dec-1"), ledger=first)
    _, seen = store.release_ledger("ag-1", "visits")
    later = "2026-03-01T10:30:00.000000Z"
    store.append_audit(
        _draft("dec-2"),
        ledger=LedgerWrite("ag-1", "visits", "dec-2", seen, ((_p("D01"), {"subjects": 45.0}),), later),
    )
    racing = LedgerWrite("ag-1", "visits", "dec-3", seen, ((_p("D01"), {"subjects": 40.0}),), AT)
    with pytest.raises(LedgerMoved):
        store.append_audit(_draft("dec-3"), ledger=racing)
    assert [e.decision_id for e in store.audit_entries()] == ["dec-1", "dec-2"]
    ((cell,), _) = store.release_ledger("ag-1", "visits")
    assert cell.released_at == later


def test_a_repeat_from_the_same_data_leaves_the_ledger_as_it_was(store: SqlStore) -> None:
    """A cell released again from the data it was last released from writes nothing: the ledger's
    version stays, so a release checked beside that repeat is not refused for it."""
    store.append_audit(
        _draft("dec-1"),
        ledger=LedgerWrite("ag-1", "visits", "dec-1", 0, ((_p("D01"), {"subjects": 30.0}),), AT),
    )
    _, seen = store.release_ledger("ag-1", "visits")
    again = LedgerWrite("ag-1", "visits", "dec-2", seen, ((_p("D01"), {"subjects": 30.0}),), AT)
    store.append_audit(_draft("dec-2"), ledger=again)
    ((cell,), version) = store.release_ledger("ag-1", "visits")
    assert (version, cell.released_at, cell.decision_id) == (seen, AT, "dec-1")
    beside = LedgerWrite("ag-1", "visits", "dec-3", seen, ((_p("D02"), {"subjects": 25.0}),), AT)
    store.append_audit(_draft("dec-3"), ledger=beside)
    assert sorted(c.decision_id for c in store.release_ledger("ag-1", "visits")[0]) == ["dec-1", "dec-3"]


def test_a_cell_released_again_from_older_data_keeps_the_newer_watermark(store: SqlStore) -> None:
    """Newcomers count from the newest data a cell was released from: written again with an older
    watermark, the cell keeps the newer one."""
    later = "2026-03-01T10:30:00.000000Z"
    store.append_audit(
        _draft("dec-1"),
        ledger=LedgerWrite("ag-1", "visits", "dec-1", 0, ((_p("D01"), {"subjects": 30.0}),), later),
    )
    _, seen = store.release_ledger("ag-1", "visits")
    older = LedgerWrite("ag-1", "visits", "dec-2", seen, ((_p("D01"), {"subjects": 30.0}),), AT)
    store.append_audit(_draft("dec-2"), ledger=older)
    ((cell,), _) = store.release_ledger("ag-1", "visits")
    assert cell.released_at == later


def test_no_ledger_rows_without_the_audit_entry(store: SqlStore, sql: Callable[..., list[Any]]) -> None:
    """When the audit entry cannot be written, the ledger rows of its release are not either."""
    sql("DROP TABLE audit_log")
    with pytest.raises(AuditWriteError):
        store.append_audit(
            _draft("dec-1"), ledger=LedgerWrite("ag-1", "visits", "dec-1", 0, ((_p(), {}),), AT)
        )
    assert sql("SELECT COUNT(*) FROM release_ledger") == [(0,)]


def test_differences_count_distinct_people_outside_every_part(store: SqlStore, batches: Any) -> None:
    """Container minus parts counts people, not rows: a person with records inside and outside a part is not outside it."""
    rows = [_visit(f"a{i}", "D01") for i in range(12)] + [_visit(f"b{i}", "D02") for i in range(3)]
    rows += [_visit("a0", "D02"), _visit("c0", "D03"), _visit("c0", "D03", DAY + 1)]
    rows += [_visit(f"d{i}", "D04") for i in range(5)]
    batches.store(store, "visits", "b1", rows)
    batches.store(store, "contacts", "c1", _contacts(10))
    checks = [
        Check(_p("D01", "D02"), (_p("D01"),), frozenset({0}), "q"),  # b0..b2 (a0 is in D01 too)
        Check(_p(), (_p("D01"), _p("D02")), frozenset({0}), "q"),  # c0 and d0..d4
        Check(_p("D03"), (_p("D03"),), frozenset({0}), "q"),  # nobody
        Check(_p("D01"), (_p("D01", link=LINK),), frozenset({0}), "q"),  # a10, a11
    ]
    assert store.ledger_differences("visits", checks) == [3, 6, 0, 2]


def test_one_part_checks_answered_together_count_as_each_would_alone(store: SqlStore, batches: Any) -> None:
    """A container checked against each of two disjoint parts counts, for each part, the people
    with no record in it (|C| - |P|), exactly as that check counted alone does: a person with
    records in both parts is not outside either. (Grouped, it once counted people with any record
    outside the part, a larger figure, so the same pair passed or failed depending on whether a
    second disjoint part had been released.)"""
    rows = [_visit(f"a{i}", "D01") for i in range(12)] + [_visit(f"b{i}", "D02") for i in range(3)]
    rows += [_visit(f"x{i}", "D02") for i in range(12)] + [_visit(f"x{i}", "D01") for i in range(12)]
    batches.store(store, "visits", "b1", rows)
    both = _p("D01", "D02")
    alone = [Check(both, (_p("D01"),), frozenset({0}), "q")]
    together = [*alone, Check(both, (_p("D02"),), frozenset({0}), "q")]
    assert store.ledger_differences("visits", alone) == [3]  # b0..b2: the x people are in D01 too
    assert store.ledger_differences("visits", together) == [3, 12]  # b0..b2; a0..a11


def test_newcomers_of_more_cells_than_one_statement_holds_are_each_counted(
    store: SqlStore, batches: Any
) -> None:
    """Seventy cells asked about at once (a statement holds 64 counts) each get their own count,
    in order: people stored after the time given, in that cell."""
    batches.store(store, "visits", "b1", [_visit(f"a{i}", "D01") for i in range(4)])
    repeats = [(_p("D01"), "2000-01-01T00:00:00Z")] * 69 + [(_p("D02"), "2000-01-01T00:00:00Z")]
    assert store.ledger_newcomers("visits", repeats) == [4] * 69 + [0]
    assert store.ledger_newcomers("visits", repeats[:1]) == [4]
    assert store.ledger_newcomers("visits", [(_p("D01"), "2999-01-01T00:00:00Z")]) == [0]


def test_a_batch_stored_between_the_answer_and_its_audit_entry_is_still_new(
    store: SqlStore, batches: Any
) -> None:
    """The server reads the cells, checks them, then writes the audit entry and the ledger rows:
    three people stored between the read and the write were not in the answer, so asking again
    must count them as newcomers (else the second answer minus the first isolates them)."""
    batches.store(store, "visits", "b1", [_visit(f"a{i}", "D01") for i in range(30)])
    answer = store.aggregate(QuerySpec("visits", (MeasureRef("subjects"),), ()))
    assert answer.total.subjects == 30
    batches.store(store, "visits", "b2", [_visit(f"late{i}", "D01") for i in range(3)])
    write = LedgerWrite("ag-1", "visits", "dec-1", 0, ((_p(), {"subjects": 30.0}),), answer.watermark)
    store.append_audit(_draft("dec-1"), ledger=write)
    (cell,), _ = store.release_ledger("ag-1", "visits")
    assert store.ledger_newcomers("visits", [(cell.predicate, cell.released_at)]) == [3]


def test_people_the_answer_held_are_not_newcomers(store: SqlStore, batches: Any) -> None:
    """The honest counterpart: asked again with nothing stored since the answer's read, its
    own people (in its last batch too) are not new."""
    batches.store(store, "visits", "b1", [_visit(f"a{i}", "D01") for i in range(20)])
    batches.store(store, "visits", "b2", [_visit(f"b{i}", "D01") for i in range(10)])
    answer = store.aggregate(QuerySpec("visits", (MeasureRef("subjects"),), ()))
    write = LedgerWrite("ag-1", "visits", "dec-1", 0, ((_p(), {"subjects": 30.0}),), answer.watermark)
    store.append_audit(_draft("dec-1"), ledger=write)
    (cell,), _ = store.release_ledger("ag-1", "visits")
    assert store.ledger_newcomers("visits", [(cell.predicate, cell.released_at)]) == [0]


def test_a_linked_side_stored_after_the_answer_makes_its_people_new(store: SqlStore, batches: Any) -> None:
    """A linked cell: police contacts stored between the answer's read and its audit entry link
    two more people; they were not in the answer, so they are newcomers of the linked cell."""
    batches.store(store, "visits", "b1", [_visit(f"a{i}", "D01") for i in range(12)])
    contacts = _contacts(12)
    batches.store(store, "contacts", "c1", contacts[:10])
    answer = store.aggregate(LINKED_PEOPLE)
    assert answer.total.subjects == 10
    batches.store(store, "contacts", "c2", contacts[10:])
    write = LedgerWrite(
        "ag-1", "visits", "dec-1", 0, ((_p(link=LINK), {"subjects": 10.0}),), answer.watermark
    )
    store.append_audit(_draft("dec-1"), ledger=write)
    (cell,), _ = store.release_ledger("ag-1", "visits")
    assert store.ledger_newcomers("visits", [(cell.predicate, cell.released_at)]) == [2]


def test_differences_as_of_an_answer_count_only_the_data_it_read(store: SqlStore, batches: Any) -> None:
    """A difference checked for an answer counts the people that answer read: ten more stored
    after its read (before the check) do not lift a difference of three to thirteen."""
    rows = [_visit(f"a{i}", "D01") for i in range(20)] + [_visit(f"b{i}", "D02") for i in range(3)]
    batches.store(store, "visits", "b1", rows)
    answer = store.aggregate(QuerySpec("visits", (MeasureRef("subjects"),), ()))
    batches.store(store, "visits", "b2", [_visit(f"late{i}", "D02") for i in range(10)])
    check = Check(_p("D01", "D02"), (_p("D01"),), frozenset({0}), "q")
    assert store.ledger_differences("visits", [check], as_of=answer.watermark) == [3]
    assert store.ledger_differences("visits", [check]) == [13]  # today's data, for comparison
    together = [check, Check(_p("D01", "D02"), (_p("D02"),), frozenset({0}), "q")]
    assert store.ledger_differences("visits", together, as_of=answer.watermark) == [3, 20]


def test_a_linked_difference_as_of_an_answer_ignores_links_stored_after_it(
    store: SqlStore, batches: Any
) -> None:
    """The link of a difference is decided by the other dataset's records the answer read: police
    contacts stored after it do not move people into the linked part."""
    batches.store(store, "visits", "b1", [_visit(f"a{i}", "D01") for i in range(15)])
    contact = [{"subject": "a0", "event_day": DAY - 5, "district": "D01", "incident_type": "other"}]
    batches.store(store, "contacts", "c1", contact)
    answer = store.aggregate(QuerySpec("visits", (MeasureRef("subjects"),), ()))
    later = [
        {"subject": f"a{i}", "event_day": DAY - 5, "district": "D01", "incident_type": "other"}
        for i in range(1, 12)
    ]
    batches.store(store, "contacts", "c2", later)
    check = Check(_p("D01"), (_p("D01", link=LINK),), frozenset({0}), "q")
    assert store.ledger_differences("visits", [check], as_of=answer.watermark) == [14]
    assert store.ledger_differences("visits", [check]) == [3]


def test_newcomers_as_of_an_answer_are_those_stored_between_the_two_reads(
    store: SqlStore, batches: Any
) -> None:
    """Newcomers of a cell released at one watermark, for an answer read at a later one: the
    people stored in between, not those stored after the answer's read."""
    batches.store(store, "visits", "b1", [_visit(f"a{i}", "D01") for i in range(20)])
    first = store.aggregate(QuerySpec("visits", (MeasureRef("subjects"),), ()))
    batches.store(store, "visits", "b2", [_visit(f"b{i}", "D01") for i in range(2)])
    second = store.aggregate(QuerySpec("visits", (MeasureRef("subjects"),), ()))
    batches.store(store, "visits", "b3", [_visit(f"c{i}", "D01") for i in range(30)])
    since = [(_p("D01"), first.watermark)]
    assert store.ledger_newcomers("visits", since, as_of=second.watermark) == [2]
    assert store.ledger_newcomers("visits", since) == [32]
    again = [(_p("D01"), second.watermark)]  # only people stored after the answer: none new to it
    assert store.ledger_newcomers("visits", again, as_of=second.watermark) == [0]


def test_newcomers_are_people_new_to_the_cell_not_people_with_a_new_record_in_it(
    indexed: SqlStore, batches: Any
) -> None:
    """Thirty people in D01 released; then seven of them come back (another visit), three new
    people come, and two people of D02 have their first D01 visit: D01's newcomers are the five
    not in it before. Counting the returning seven too made ten, at k, and the repeat minus the
    earlier answer then isolated the three."""
    rows = [_visit(f"a{i}", "D01") for i in range(30)] + [_visit(f"b{i}", "D02") for i in range(12)]
    batches.store(indexed, "visits", "b1", rows)
    spec = QuerySpec("visits", (MeasureRef("subjects"),), (), filters=(("district", ("D01",)),))
    d01 = _released(indexed, _p("D01"), spec)
    later = [_visit(f"a{i}", "D01", DAY + 5) for i in range(7)] + [_visit(f"new{i}", "D01") for i in range(3)]
    later += [_visit(f"b{i}", "D01", DAY + 5) for i in range(2)] + [_visit("b3", "D02", DAY + 5)]
    batches.store(indexed, "visits", "b2", later)
    assert indexed.ledger_newcomers("visits", [d01]) == [5]
    assert indexed.ledger_newcomers("visits", [(_p("D02"), d01[1])]) == [0]  # b3 came back to D02


def test_a_linked_cell_counts_people_newly_linked_not_linked_people_with_a_new_record(
    indexed: SqlStore, batches: Any
) -> None:
    """Ten people with a police contact released in the linked cell; then seven of them have
    another visit the contact still links, two unlinked people get a contact, and one new person
    comes with visit and contact: the newcomers are the three not linked before."""
    batches.store(indexed, "visits", "b1", [_visit(f"a{i}", "D01") for i in range(12)])
    contacts = _contacts(12)
    batches.store(indexed, "contacts", "c1", contacts[:10])
    released = _released(indexed, _p(link=LINK), LINKED_PEOPLE)
    again = [_visit(f"a{i}", "D01", DAY + 3) for i in range(7)] + [_visit("new0", "D01")]
    batches.store(indexed, "visits", "b2", again)
    new_contact = {"subject": "new0", "event_day": DAY - 1, "district": "D01", "incident_type": "other"}
    batches.store(indexed, "contacts", "c2", [*contacts[10:], new_contact])
    assert indexed.ledger_newcomers("visits", [released]) == [3]
