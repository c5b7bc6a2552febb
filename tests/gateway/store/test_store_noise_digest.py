"""The people digest and data version noise is keyed on (DESIGN §9.6), computed in SQL: the same
people give the same digest however the request is worded, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from typing import Any

from gateway.query import MeasureRef, QuerySpec
from gateway.store import SqlStore
from gateway.store._schema import subject_h, subject_hs

MEASURES = (MeasureRef("subjects"), MeasureRef("sum", "stay_hours"))


def _row(subject: str, district: str, day: int = 19700) -> dict[str, Any]:
    return {
        "subject": subject,
        "event_day": day,
        "district": district,
        "age_band": "18-34",
        "sex": "F",
        "presentation": "other",
        "stay_hours": 2.0,
    }


def test_the_digest_is_the_people_not_the_wording(store: SqlStore, batches: Any) -> None:
    """A district's digest is the sum of its people's subject_h (each once, however many
    records), the same with its filter values reordered or an empty value added, the same with
    the dominance ranking or without; and the data version counts the dataset's batches."""
    batches.store(
        store, "visits", "b1", [_row(f"p{i}", "D01") for i in range(12)] + [_row("p0", "D01", 19701)]
    )
    batches.store(store, "visits", "b2", [_row(f"q{i}", "D02") for i in range(15)])
    plain = QuerySpec("visits", MEASURES, ("district",), filters=(("district", ("D01", "D02")),))
    padded = QuerySpec("visits", MEASURES, ("district",), filters=(("district", ("D01", "D02", "D04")),))
    answers = [
        store.aggregate(plain, digest=True),
        store.aggregate(padded, digest=True),
        store.aggregate(plain, digest=True, top_n=2),
    ]
    expected = sum(subject_h(batches.token(f"p{i}")) for i in range(12))
    for result in answers:
        assert result.cells[0].people == expected
        assert result.data_version == 2
    assert len({(r.cells[1].people, r.total.people) for r in answers}) == 1
    assert answers[0].cells[0].people != answers[0].cells[1].people
    assert store.aggregate(plain).cells[0].people == 0  # not asked for, not read


def test_subject_hs_is_subject_h_of_each_subject() -> None:
    """The whole-batch form gives each subject's own subject_h, in order, high bits included."""
    subjects = [bytes([255] * 32), bytes(32), bytes([0x80, 0, 0, 1]) + bytes(28)]
    subjects += [os.urandom(32) for _ in range(500)]

    assert subject_hs(subjects, 32) == [subject_h(s) for s in subjects]
    assert subject_hs([b"\x01\x02\x03\x04\x05"], 5) == [0x01020304]  # a width the words do not divide
