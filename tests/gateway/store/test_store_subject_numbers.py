"""People are counted by their subject numbers (``subject_n``) only where that is exact: two
people whose subjects share a number, or a row without one, never make a count one person short."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from gateway.catalogue import Catalogue
from gateway.disclosure._ledger import CellPredicate, Check
from gateway.query import LinkSpec, MeasureRef, QuerySpec
from gateway.store import SqlStore, open_store
from gateway.store import _subject_numbers as subject_numbers
from gateway.store._schema import DatasetTable, subject_n, subject_ns

COUNTS = QuerySpec("visits", (MeasureRef("subjects"), MeasureRef("records")), ("district",))
SUMS = QuerySpec("visits", (MeasureRef("subjects"), MeasureRef("sum", "stay_hours")), ("district",))
SHARED = b"\x80\x01\x02\x03\x04\x05\x06\x07"  # the high bit set: a negative number


def _row(person: int, district: str) -> dict[str, Any]:
    return {
        "subject": f"p{person}",
        "event_day": 19_800 + person,
        "district": district,
        "age_band": "18-34",
        "sex": "F",
        "presentation": "other",
        "stay_hours": 1.0 + person,
    }


def _store(
    store: SqlStore, batches: Any, batch_id: str, rows: list[dict[str, Any]], *, sharing: int = 0
) -> None:
    """Store ``rows``; the first ``sharing`` of them get subjects that all begin with SHARED (and
    differ after it), so their people share one subject number."""
    columns = batches.columns("visits", rows)
    subjects = list(columns.subjects)
    for i in range(sharing):
        subjects[i] = SHARED + hashlib.sha256(f"{batch_id}-{i}".encode()).digest()[:24]
    columns = dataclasses.replace(columns, subjects=subjects)
    store.store_batch(batches.meta("visits", batch_id, len(rows)), columns)


def _people(store: SqlStore, spec: QuerySpec) -> tuple[dict[tuple[str, ...], int], int]:
    result = store.aggregate(spec, top_n=2, near_percent=85)
    return {cell.key: cell.subjects for cell in result.cells}, result.total.subjects


@contextmanager
def _statements(store: SqlStore) -> Iterator[list[str]]:
    """The SQL text of every statement the store sends meanwhile."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    engine = store._db.engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def test_subject_ns_is_subject_n_of_each_subject() -> None:
    """The whole-batch form gives each subject's own signed number, in order, a width the words do
    not divide included."""
    subjects = [SHARED + bytes(24), bytes(range(32)), b"\xff" * 32]
    assert subject_ns(subjects, 32) == [subject_n(s) for s in subjects]
    assert subject_n(b"\xff" * 32) == -1
    assert subject_n(SHARED + bytes(24)) < 0
    assert subject_ns([bytes(range(9))], 9) == [subject_n(bytes(range(9)))]


@pytest.mark.parametrize("spec", [COUNTS, SUMS], ids=["counts", "sums"])
def test_people_sharing_a_number_are_counted_apart(store: SqlStore, batches: Any, spec: QuerySpec) -> None:
    """Six people whose subjects share a number, beside four who do not, count as ten: in their
    cell and in the total, with and without sums."""
    rows = [_row(i, "D01") for i in range(6)] + [_row(i, "D02") for i in range(6, 10)]
    _store(store, batches, "b1", rows, sharing=6)
    assert _people(store, spec) == ({("D01",): 6, ("D02",): 4}, 10)
    assert _people(store, spec) == ({("D01",): 6, ("D02",): 4}, 10)  # and after the look


def test_a_shared_number_arriving_later_is_found(store: SqlStore, batches: Any) -> None:
    """A dataset seen free of shared numbers, then sent a batch whose person shares a number with
    a stored one: the next answer still counts every person."""
    first = [_row(i, "D01") for i in range(5)]
    _store(store, batches, "b1", first, sharing=1)
    assert _people(store, COUNTS) == ({("D01",): 5}, 5)
    _store(store, batches, "b2", [_row(7, "D01"), _row(8, "D02")], sharing=1)
    assert _people(store, COUNTS) == ({("D01",): 6, ("D02",): 1}, 7)
    assert not store._numbers.usable(store._schema.datasets["visits"])  # by subjects from now on


@pytest.mark.parametrize("when", ["first", "later"])
def test_a_row_without_a_number_is_never_left_out(
    store: SqlStore, batches: Any, sql: Callable[..., list[Any]], when: str
) -> None:
    """Records with no subject number (written before the numbers, or by hand) are counted: the
    dataset is then counted by subjects, whether they are there at the first look or arrive after."""
    if when == "later":
        _store(store, batches, "b0", [_row(20, "D02")])
        assert _people(store, COUNTS) == ({("D02",): 1}, 1)
    _store(store, batches, "b1", [_row(i, "D01") for i in range(4)])
    sql("UPDATE ds_visits SET subject_n = NULL WHERE batch_id = 'b1'")
    expected = ({("D01",): 4, ("D02",): 1}, 5) if when == "later" else ({("D01",): 4}, 4)
    assert _people(store, COUNTS) == expected


def test_people_are_counted_by_number_once_seen_distinct(store: SqlStore, batches: Any) -> None:
    """With every stored number held by one subject, the answer counts people by number and looks
    at the numbers once, not again while no batch lands."""
    _store(store, batches, "b1", [_row(i, ("D01", "D02")[i % 2]) for i in range(8)])
    with _statements(store) as first:
        assert _people(store, SUMS) == ({("D01",): 4, ("D02",): 4}, 8)
    with _statements(store) as again:
        assert _people(store, SUMS) == ({("D01",): 4, ("D02",): 4}, 8)
    counted = [s for s in again if "count(DISTINCT" in s]
    assert counted
    assert all("subject_n" in s for s in counted)
    assert len(again) < len(first)  # no second look


def test_a_subject_partly_unnumbered_at_the_first_look_is_counted_once(
    store: SqlStore, batches: Any, sql: Callable[..., list[Any]]
) -> None:
    """One of a person's two records lost its number before the first look: the dataset is
    counted by subjects, and the person's cell still holds them."""
    _store(store, batches, "b1", [_row(0, "D01"), _row(0, "D02"), _row(1, "D02")])
    sql("UPDATE ds_visits SET subject_n = NULL WHERE district = 'D02' AND event_day = 19800")
    assert _people(store, COUNTS) == ({("D01",): 1, ("D02",): 2}, 2)


def test_a_shared_number_hidden_by_a_subject_with_two_numbers_is_found(
    store: SqlStore, batches: Any, sql: Callable[..., list[Any]]
) -> None:
    """Two people share a number while a third holds two (rows edited by hand): as many distinct
    numbers as subjects, yet the first look finds the shared one and every person is counted."""
    _store(store, batches, "b1", [_row(0, "D01"), _row(0, "D02"), _row(1, "D03"), _row(2, "D03")])
    sql("UPDATE ds_visits SET subject_n = 12345 WHERE district = 'D02'")
    sql("UPDATE ds_visits SET subject_n = 777 WHERE district = 'D03'")
    assert _people(store, COUNTS) == ({("D01",): 1, ("D02",): 1, ("D03",): 2}, 3)


def test_an_answer_newer_than_every_look_is_not_trusted(store: SqlStore, batches: Any) -> None:
    """Numbers are trusted through the stamp the store has looked at, not beyond it."""
    _store(store, batches, "b1", [_row(0, "D01")])
    _people(store, COUNTS)
    visits = store._schema.datasets["visits"]
    assert store._numbers.exact_through(visits, "2025-01-01T00:00:00.000000Z")
    assert not store._numbers.exact_through(visits, "9999-12-31T23:59:59.999999Z")


@pytest.mark.parametrize("top_n", [1, 3])
@pytest.mark.parametrize("digest", [False, True], ids=["plain", "digest"])
def test_shared_numbers_on_the_exact_tops_and_digest_paths(
    store: SqlStore, batches: Any, top_n: int, digest: bool
) -> None:
    """The exact top-n ranking and the noise digest's statements count people apart too."""
    _store(
        store,
        batches,
        "b1",
        [_row(i, "D01") for i in range(6)] + [_row(i, "D02") for i in range(6, 10)],
        sharing=6,
    )
    for _ in range(2):
        result = store.aggregate(SUMS, top_n=top_n, digest=digest)
        assert ({c.key: c.subjects for c in result.cells}, result.total.subjects) == (
            {("D01",): 6, ("D02",): 4},
            10,
        )


def test_shared_numbers_in_a_linked_question(store: SqlStore, batches: Any) -> None:
    """People sharing a number, linked to their contacts in another dataset, count apart."""
    rows = [_row(i, "D01") for i in range(6)]
    _store(store, batches, "b1", rows, sharing=6)
    contacts = [
        {"subject": r["subject"], "event_day": 19_800 + i, "district": "D01", "incident_type": "other"}
        for i, r in enumerate(rows)
    ]
    columns = batches.columns("contacts", contacts)
    linked = [SHARED + hashlib.sha256(f"b1-{i}".encode()).digest()[:24] for i in range(6)]
    store.store_batch(batches.meta("contacts", "c1", 6), dataclasses.replace(columns, subjects=linked))
    spec = dataclasses.replace(COUNTS, link=LinkSpec("contacts", 0, 0))
    for _ in range(2):
        assert store.aggregate(spec).total.subjects == 6


@pytest.mark.parametrize("looked", [False, True], ids=["first-look", "later-look"])
def test_a_shared_number_landing_between_the_answer_and_its_look(
    store_url: str, catalogue: Catalogue, batches: Any, looked: bool
) -> None:
    """Another gateway stores a person sharing a number after the answer was read and before the
    look: that answer is exact for the rows it read, and the next one counts the newcomer."""
    store, writer = open_store(store_url, catalogue), open_store(store_url, catalogue)
    try:
        _store(store, batches, "b1", [_row(i, "D01") for i in range(3)], sharing=1)
        if looked:
            assert _people(store, COUNTS) == ({("D01",): 3}, 3)
        original = store._numbers.exact_through
        landed: list[bool] = []

        def late(target: DatasetTable, watermark: str) -> bool:
            if not landed:
                landed.append(True)
                _store(writer, batches, "b2", [_row(9, "D01")], sharing=1)
            return original(target, watermark)

        store._numbers.exact_through = late  # type: ignore[method-assign]
        assert _people(store, COUNTS) in [({("D01",): 3}, 3), ({("D01",): 4}, 4)]  # either side of it
        assert _people(store, COUNTS) == ({("D01",): 4}, 4)
    finally:
        writer.close()
        store.close()


def test_a_failed_look_trusts_nothing(store: SqlStore, batches: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the look cannot be made, the answer is read again by subjects and is exact, and the
    dataset is counted by subjects from then on (no look tried again by every answer)."""

    def fails(*_args: Any) -> None:
        raise OperationalError("look", {}, Exception("the database went away"))

    monkeypatch.setattr(subject_numbers, "_look", fails)
    _store(store, batches, "b1", [_row(i, "D01") for i in range(4)], sharing=4)
    assert _people(store, COUNTS) == ({("D01",): 4}, 4)
    assert not store._numbers.usable(store._schema.datasets["visits"])


def test_covering_indexes_are_read_by_subject(store_url: str, catalogue: Catalogue, batches: Any) -> None:
    """With the query profile's covering indexes (which hold subjects, not numbers), people are
    counted by subject, and exactly."""
    store = open_store(store_url, catalogue, indexes="query")
    try:
        _store(store, batches, "b1", [_row(i, "D01") for i in range(4)], sharing=4)
        with _statements(store) as sent:
            assert _people(store, COUNTS) == ({("D01",): 4}, 4)
        counted = [s for s in sent if "count(DISTINCT" in s]
        assert counted
        assert not any("subject_n" in s for s in counted)
    finally:
        store.close()


# everyone's records outside D02's: people with a record in D02 are not in the difference
EVERYONE_BUT_D02 = Check(
    CellPredicate("visits"), (CellPredicate("visits", (("district", ("D02",)),)),), frozenset({0}), "q"
)


@pytest.mark.parametrize("sharing", [0, 6], ids=["distinct", "shared"])
def test_ledger_checks_count_people_apart_by_an_answers_watermark(
    store: SqlStore, batches: Any, sharing: int
) -> None:
    """The release ledger's differences, read by an answer's watermark, count people by number
    where the store has seen them distinct and by subject where two share one: exact either way,
    the dominance sums too."""
    rows = [_row(i, "D01") for i in range(6)] + [_row(i, "D02") for i in range(6, 9)]
    _store(store, batches, "b1", rows, sharing=sharing)
    as_of = store.aggregate(COUNTS).watermark
    check = EVERYONE_BUT_D02
    with _statements(store) as sent:
        assert store.ledger_differences("visits", [check], as_of) == [6]
        (total, top) = store.ledger_sum_differences("visits", [(check, "stay_hours")], 2, as_of)[0]
    assert (total, top) == (sum(1.0 + i for i in range(6)), 6.0 + 5.0)
    counted = [s for s in sent if "count(DISTINCT" in s]
    assert counted
    assert all(("subject_n" in s) == (not sharing) for s in counted)


def test_ledger_checks_by_a_watermark_newer_than_the_last_look_look_again(
    store: SqlStore, batches: Any
) -> None:
    """Numbers seen distinct through one batch are not trusted for a watermark past a later batch
    whose person shares a number: the ledger's look finds it, and counts people apart."""
    _store(store, batches, "b1", [_row(i, "D01") for i in range(4)], sharing=1)
    store.aggregate(COUNTS)  # b1 looked at: its numbers are distinct
    _store(store, batches, "b2", [_row(9, "D01")], sharing=1)  # shares the number of b1's first
    contacts = [{"subject": "p0", "event_day": 19_800, "district": "D01", "incident_type": "other"}]
    store.store_batch(batches.meta("contacts", "c1", 1), batches.columns("contacts", contacts))
    newest = store.aggregate(dataclasses.replace(COUNTS, dataset="contacts")).watermark  # past b2
    assert store.ledger_differences("visits", [EVERYONE_BUT_D02], newest) == [5]


def test_ledger_by_an_answer_reads_only_that_answers_batches(store: SqlStore, batches: Any) -> None:
    """Seen distinct through the answer; a later batch brings a person sharing a number and a
    newcomer: the ledger by the answer's watermark counts by number over the answer's records
    only, and over everything stored by subject, both of them counted."""
    _store(store, batches, "b1", [_row(i, "D01") for i in range(4)] + [_row(5, "D02")], sharing=1)
    as_of = store.aggregate(COUNTS).watermark
    _store(store, batches, "b2", [_row(9, "D01"), _row(10, "D01")], sharing=1)
    check = EVERYONE_BUT_D02
    with _statements(store) as sent:
        assert store.ledger_differences("visits", [check], as_of) == [4]
        figures = store.ledger_sum_differences("visits", [(check, "stay_hours")], 1, as_of)
        bounded = store.ledger_sum_differences("visits", [(check, "stay_hours")], 2, as_of, near_percent=85)
    assert figures == [(1.0 + 2.0 + 3.0 + 4.0, 4.0)]
    assert bounded[0][0] == 10.0
    counted = [s for s in sent if "count(DISTINCT" in s]
    assert counted
    assert all("subject_n" in s for s in counted)
    assert store.ledger_differences("visits", [check]) == [6]


def test_ledger_without_an_answers_watermark_counts_by_subject(store: SqlStore, batches: Any) -> None:
    """Checks over every stored record (no watermark) count people by subject, even where no
    look has been made at the numbers they share."""
    _store(store, batches, "b1", [_row(i, "D01") for i in range(6)], sharing=6)
    assert store.ledger_differences("visits", [EVERYONE_BUT_D02]) == [6]


def _split(store: SqlStore, batches: Any, sql: Callable[..., list[Any]], rows: list[dict[str, Any]]) -> str:
    """Store ``rows`` (person 0 twice), give person 0's D02/D03 record another number by hand,
    and answer once: the watermark of that answer."""
    _store(store, batches, "b1", rows)
    sql(
        "UPDATE ds_visits SET subject_n = 4242 WHERE subject_n IS NOT NULL AND district IN ('D02', 'D03')"
        " AND event_day = 19850"
    )
    return store.aggregate(COUNTS).watermark


def test_a_subject_holding_two_numbers_is_one_person_in_a_difference(
    store: SqlStore, batches: Any, sql: Callable[..., list[Any]]
) -> None:
    """A person whose records hold two numbers (one edited by hand) is inside the part by one of
    them: the difference is not inflated by counting the other as a second person."""
    rows = [_row(0, "D01"), {**_row(0, "D02"), "event_day": 19_850}, _row(1, "D01"), _row(2, "D03")]
    as_of = _split(store, batches, sql, rows)
    assert store.ledger_differences("visits", [EVERYONE_BUT_D02], as_of) == [2]
    assert store.ledger_differences("visits", [EVERYONE_BUT_D02]) == [2]


def test_a_subject_holding_two_numbers_still_dominates_a_sum(
    store: SqlStore, batches: Any, sql: Callable[..., list[Any]]
) -> None:
    """One person's 100 + 100 hours of a 201-hour difference, under two numbers, is still one
    person's 200: the dominance figure is not split into two people of 100."""
    rows = [
        {**_row(0, "D01"), "stay_hours": 100.0},
        {**_row(0, "D03"), "event_day": 19_850, "stay_hours": 100.0},
        {**_row(1, "D01"), "stay_hours": 1.0},
    ]
    as_of = _split(store, batches, sql, rows)
    item = [(EVERYONE_BUT_D02, "stay_hours")]
    assert store.ledger_sum_differences("visits", item, 1, as_of) == [(201.0, 200.0)]


def test_a_subject_holding_two_numbers_is_one_person_in_a_cell(
    store: SqlStore, batches: Any, sql: Callable[..., list[Any]]
) -> None:
    """A one-person cell whose person's records hold two numbers counts one person."""
    _store(store, batches, "b1", [_row(0, "D01"), {**_row(0, "D01"), "event_day": 19_850}, _row(1, "D02")])
    sql("UPDATE ds_visits SET subject_n = 4242 WHERE event_day = 19850")
    assert _people(store, COUNTS) == ({("D01",): 1, ("D02",): 1}, 2)
    assert _people(store, COUNTS) == ({("D01",): 1, ("D02",): 1}, 2)


def test_a_subject_given_a_second_number_later_is_found(
    store: SqlStore, batches: Any, sql: Callable[..., list[Any]]
) -> None:
    """A dataset seen one-to-one, then a batch whose record of a stored person holds another
    number (edited by hand): the next look finds it, and the person counts once."""
    _store(store, batches, "b1", [_row(0, "D01"), _row(1, "D01")])
    assert _people(store, COUNTS) == ({("D01",): 2}, 2)
    _store(store, batches, "b2", [{**_row(0, "D01"), "event_day": 19_850}])
    sql("UPDATE ds_visits SET subject_n = 4242 WHERE batch_id = 'b2'")
    assert _people(store, COUNTS) == ({("D01",): 2}, 2)
    assert not store._numbers.usable(store._schema.datasets["visits"])
