"""Storing batches: once per batch id, in one transaction, errors that name fields and carry no data."""

from __future__ import annotations

import dataclasses
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from gateway.catalogue import Catalogue
from gateway.errors import Conflict, InvalidRequest, StoreError
from gateway.store import RecordColumns, SqlStore, open_store


def _rows(n: int, prefix: str = "p") -> list[dict[str, Any]]:
    return [
        {
            "subject": f"{prefix}{i % 7}",
            "event_day": 19_700 + i,
            "district": ("D01", "D02", "D03")[i % 3],
            "age_band": "18-34",
            "sex": ("F", "M")[i % 2],
            "presentation": "overdose",
            "stay_hours": float(i % 5),
        }
        for i in range(n)
    ]


def _counts(sql: Any) -> tuple[int, int]:
    return sql("SELECT count(*) FROM ds_visits")[0][0], sql("SELECT count(*) FROM batches")[0][0]


def test_schema_creation_is_idempotent_and_keeps_data(store: SqlStore, batches: Any, sql: Any) -> None:
    """create_schema may run on every start: a second and third run change nothing stored."""
    batches.store(store, "visits", "b-1", _rows(12))
    store.create_schema()
    store.create_schema()
    assert _counts(sql) == (12, 1)


def test_a_resent_batch_is_stored_once(store: SqlStore, batches: Any, sql: Any) -> None:
    """The same batch id and digest again answers stored=False and writes nothing."""
    rows = _rows(20)
    first = store.store_batch(batches.meta("visits", "b-1", 20), batches.columns("visits", rows))
    again = store.store_batch(batches.meta("visits", "b-1", 20), batches.columns("visits", rows))
    assert (first.stored, first.records) == (True, 20)
    assert (again.stored, again.records) == (False, 20)
    assert _counts(sql) == (20, 1)


def test_a_batch_id_reused_for_other_content_is_a_conflict(store: SqlStore, batches: Any, sql: Any) -> None:
    """Same batch id, other digest: Conflict, and neither rows nor batch record change."""
    batches.store(store, "visits", "b-1", _rows(10))
    with pytest.raises(Conflict, match=r"^batch_id: already used for different content$"):
        store.store_batch(
            batches.meta("visits", "b-1", 5, content="other"), batches.columns("visits", _rows(5, "q"))
        )
    assert _counts(sql) == (10, 1)


@pytest.mark.parametrize(
    ("column", "bad_value"),
    [("district", "D" * 500), ("district", None)],
    ids=["dimension-too-long", "dimension-null"],
)
def test_a_failure_in_the_last_row_leaves_nothing(
    store: SqlStore, batches: Any, sql: Any, column: str, bad_value: Any
) -> None:
    """A row the database refuses, after 99 good ones, rolls back the rows and the batch record."""
    rows = _rows(100)
    rows[-1] = {**rows[-1], column: bad_value}
    with pytest.raises(StoreError) as caught:
        store.store_batch(batches.meta("visits", "b-1", 100), batches.columns("visits", rows))
    assert _counts(sql) == (0, 0)
    # neither the message nor anything chained to it (as a log would print it) carries a value
    assert caught.value.message == "store: batch could not be written"
    printed = "".join(traceback.format_exception(caught.value))
    assert "ScrubbedDatabaseError" in printed  # a description of the failure survives ...
    assert "D" * 20 not in printed  # ... but no value from the batch does
    assert "18-34" not in printed
    assert "overdose" not in printed


def test_after_a_failed_batch_the_same_id_can_be_stored(store: SqlStore, batches: Any, sql: Any) -> None:
    """A rolled-back batch leaves no trace of its id: the corrected resend is stored."""
    rows = _rows(10)
    broken = [*rows[:-1], {**rows[-1], "district": "D" * 500}]
    with pytest.raises(StoreError):
        store.store_batch(batches.meta("visits", "b-1", 10), batches.columns("visits", broken))
    assert store.store_batch(batches.meta("visits", "b-1", 10), batches.columns("visits", rows)).stored
    assert _counts(sql) == (10, 1)


def test_columns_of_unequal_length_are_refused_by_name(store: SqlStore, batches: Any, sql: Any) -> None:
    """A dimension column shorter than the subjects: InvalidRequest naming it; nothing written."""
    columns = batches.columns("visits", _rows(10))
    short = RecordColumns(
        subjects=columns.subjects,
        event_days=columns.event_days,
        dimensions={**columns.dimensions, "sex": columns.dimensions["sex"][:9]},
        measures=columns.measures,
    )
    with pytest.raises(InvalidRequest) as caught:
        store.store_batch(batches.meta("visits", "b-1", 10), short)
    assert caught.value.field == "records.dimensions.sex"
    assert _counts(sql) == (0, 0)


@pytest.mark.parametrize(
    ("column", "bad", "field"),
    [
        ("subjects", b"\x01" * 31, "records.subjects"),
        ("subjects", "x" * 32, "records.subjects"),
        ("event_days", True, "records.event_days"),
        ("event_days", 19_700.0, "records.event_days"),
        ("event_days", 10**9, "records.event_days"),
    ],
    ids=["short-subject", "text-subject", "bool-day", "float-day", "day-out-of-range"],
)
def test_one_bad_value_in_a_column_is_refused_by_name(
    store: SqlStore, batches: Any, sql: Any, column: str, bad: object, field: str
) -> None:
    """One subject that is not 32 bytes, or one event day that is not a whole number in range,
    anywhere in the batch: InvalidRequest naming the column; nothing written."""
    columns = batches.columns("visits", _rows(10))
    values = list(getattr(columns, column))
    values[6] = bad
    with pytest.raises(InvalidRequest) as caught:
        store.store_batch(batches.meta("visits", "b-1", 10), dataclasses.replace(columns, **{column: values}))
    assert caught.value.field == field
    assert _counts(sql) == (0, 0)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"dataset": "unknown"}, "dataset"),
        ({"record_count": 11}, "record_count"),
        ({"batch_id": ""}, "batch_id"),
        ({"batch_id": "x" * 129}, "batch_id"),
        ({"content_digest": "abc"}, "content_digest"),
    ],
)
def test_bad_batch_metadata_is_refused_by_name(
    store: SqlStore, batches: Any, sql: Any, change: dict[str, Any], field: str
) -> None:
    """Metadata the store cannot use: InvalidRequest naming the field, nothing written."""
    meta = dataclasses.replace(batches.meta("visits", "b-1", 10), **change)
    with pytest.raises(InvalidRequest) as caught:
        store.store_batch(meta, batches.columns("visits", _rows(10)))
    assert caught.value.field == field
    assert _counts(sql) == (0, 0)


def test_missing_and_unknown_columns_are_refused_by_name(store: SqlStore, batches: Any) -> None:
    """A contract column left out, or one the contract lacks, is named in the error."""
    columns = batches.columns("visits", _rows(4))
    without = {k: v for k, v in columns.dimensions.items() if k != "age_band"}
    with pytest.raises(InvalidRequest) as missing:
        store.store_batch(
            batches.meta("visits", "b-1", 4),
            RecordColumns(columns.subjects, columns.event_days, without, columns.measures),
        )
    extra = {**columns.dimensions, "postcode": ["X"] * 4}
    with pytest.raises(InvalidRequest) as unknown:
        store.store_batch(
            batches.meta("visits", "b-2", 4),
            RecordColumns(columns.subjects, columns.event_days, extra, columns.measures),
        )
    assert missing.value.field == "records.dimensions.age_band"
    assert unknown.value.field == "records.dimensions.postcode"


def test_subjects_must_be_32_bytes(store: SqlStore, batches: Any) -> None:
    """A subject token of another length is refused before anything is written."""
    columns = batches.columns("visits", _rows(3))
    bad = RecordColumns(
        [*columns.subjects[:2], b"short"], columns.event_days, columns.dimensions, columns.measures
    )
    with pytest.raises(InvalidRequest) as caught:
        store.store_batch(batches.meta("visits", "b-1", 3), bad)
    assert caught.value.field == "records.subjects"


def test_event_month_is_derived_from_event_day(store: SqlStore, batches: Any, sql: Any) -> None:
    """Day numbers at month and year edges land in the right YYYY-MM (1970-01-01 is day 0)."""
    days = {
        0: "1970-01",
        30: "1970-01",
        31: "1970-02",
        19_722: "2023-12",
        19_723: "2024-01",
        19_782: "2024-02",
    }
    rows = [{**_rows(1)[0], "event_day": day} for day in days]
    batches.store(store, "visits", "b-1", rows)
    stored = dict(sql("SELECT event_day, event_month FROM ds_visits"))
    assert stored == days


def test_concurrent_pushes_of_one_batch_store_it_once(
    store_url: str, catalogue: Catalogue, batches: Any, sql: Any
) -> None:
    """Four stores (as four replicas) pushing the same batch at once: one stores, three see a resend."""
    stores = [open_store(store_url, catalogue) for _ in range(4)]
    rows = _rows(200)
    barrier = threading.Barrier(len(stores))

    def push(s: SqlStore) -> bool:
        barrier.wait()
        return s.store_batch(batches.meta("visits", "b-1", 200), batches.columns("visits", rows)).stored

    try:
        with ThreadPoolExecutor(len(stores)) as pool:
            outcomes = [f.result() for f in [pool.submit(push, s) for s in stores]]
    finally:
        for s in stores:
            s.close()
    assert sorted(outcomes) == [False, False, False, True]
    assert _counts(sql) == (200, 1)


def test_a_closed_store_refuses_work(store: SqlStore, batches: Any) -> None:
    """After close(), calls raise StoreError instead of quietly reconnecting."""
    store.close()
    with pytest.raises(StoreError):
        store.store_batch(batches.meta("visits", "b-1", 1), batches.columns("visits", _rows(1)))
    with pytest.raises(StoreError):
        store.ping()


def test_every_stored_row_belongs_to_a_registered_batch(store: SqlStore, batches: Any, sql: Any) -> None:
    """Every row stored is stamped with the id of a batch in the register, with its record count,
    also around a failed batch and a duplicate: the reference holds by construction where
    PostgreSQL no longer checks it by foreign key (gateway/store/_schema.py)."""
    batches.store(store, "visits", "b-1", _rows(30))
    broken = [*_rows(9), {**_rows(10)[-1], "district": "D" * 500}]
    with pytest.raises(StoreError):
        store.store_batch(batches.meta("visits", "b-2", 10), batches.columns("visits", broken))
    assert not store.store_batch(
        batches.meta("visits", "b-1", 30), batches.columns("visits", _rows(30))
    ).stored
    batches.store(store, "visits", "b-3", _rows(12, prefix="q"))
    per_batch = sql(
        "SELECT b.batch_id, b.record_count, count(v.batch_id) FROM batches b "
        "LEFT JOIN ds_visits v ON v.batch_id = b.batch_id GROUP BY b.batch_id, b.record_count ORDER BY 1"
    )
    assert [tuple(r) for r in per_batch] == [("b-1", 30, 30), ("b-3", 12, 12)]
    orphans = sql(
        "SELECT count(*) FROM ds_visits v WHERE NOT EXISTS "
        "(SELECT 1 FROM batches b WHERE b.batch_id = v.batch_id)"
    )
    assert orphans == [(0,)]


def test_a_measure_of_the_wrong_kind_fails_the_batch_whole(store: SqlStore, batches: Any, sql: Any) -> None:
    """On PostgreSQL's binary COPY a measure that is not a number (which the opener never lets
    through) fails the batch as StoreError with nothing written, not as a stray TypeError."""
    if store.backend == "sqlite":
        pytest.skip("SQLite stores any value in any column; the opener keeps measures numeric")
    rows = _rows(10)
    rows[-1] = {**rows[-1], "stay_hours": "three"}
    with pytest.raises(StoreError, match=r"^store: batch could not be written$"):
        store.store_batch(batches.meta("visits", "b-1", 10), batches.columns("visits", rows))
    assert _counts(sql) == (0, 0)


def test_subjects_of_every_byte_value_are_stored_exactly(store: SqlStore, batches: Any, sql: Any) -> None:
    """Subjects holding every byte value (0x00 to 0xff) read back byte for byte after the bulk
    insert (binary COPY with psycopg's bytes dumper on PostgreSQL)."""
    rows = _rows(8)
    columns = batches.columns("visits", rows)
    subjects = [bytes((i * 32 + j) % 256 for j in range(32)) for i in range(8)]
    columns = dataclasses.replace(columns, subjects=subjects)

    assert store.store_batch(batches.meta("visits", "bytes", 8), columns).stored
    stored = sorted(bytes(r[0]) for r in sql("SELECT subject FROM ds_visits"))

    assert stored == sorted(subjects)
