"""Batch stamps in commit order and an answer's data watermark (gateway/store/_watermark.py):
every batch an answer did not read is stamped after its watermark, whatever the order batches
began or were stamped in, and whatever a gateway host's clock says."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gateway.catalogue import Catalogue
from gateway.disclosure._ledger import CellPredicate
from gateway.errors import StoreError
from gateway.query import MeasureRef, QuerySpec
from gateway.store import SqlStore, open_store
from gateway.store import _sql as store_sql
from gateway.store._records import Rows
from gateway.store._watermark import NOTHING_STORED, Stamper, next_stamp
from gateway.store.testing import fresh_postgres_schema

COUNT = QuerySpec("visits", (MeasureRef("subjects"),), ())
NOON = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def _visits(prefix: str, n: int) -> list[dict[str, Any]]:
    return [
        {
            "subject": f"{prefix}{i}",
            "event_day": 20_000,
            "district": "D01",
            "age_band": "65+",
            "sex": "F",
            "presentation": "other",
            "stay_hours": 1.0,
        }
        for i in range(n)
    ]


def _stamps(sql: Callable[..., list[Any]]) -> dict[str, str]:
    return {str(b): str(at) for b, at in sql("SELECT batch_id, received_at FROM batches")}


def test_a_stamp_is_the_clock_when_the_clock_is_ahead_of_every_stored_stamp() -> None:
    """With nothing stored, or only older stamps, a batch is stamped with the time it commits."""
    assert next_stamp(None, NOON) == "2026-03-01T12:00:00.000000Z"
    assert next_stamp("2026-03-01T11:59:59.999999Z", NOON) == "2026-03-01T12:00:00.000000Z"


def test_a_stamp_follows_the_newest_stored_one_when_the_clock_is_behind() -> None:
    """A clock at or behind the newest stored stamp (another host's ahead, or this one stepped
    back) still stamps after it, by one microsecond."""
    assert next_stamp("2026-03-01T12:00:00.000000Z", NOON) == "2026-03-01T12:00:00.000001Z"
    assert next_stamp("2026-03-01T13:00:00.999999Z", NOON) == "2026-03-01T13:00:01.000000Z"


def test_a_stored_stamp_that_is_not_one_stops_the_batch_without_quoting_it() -> None:
    """A register holding something else than a stamp is a store error, whose message names the
    column and holds nothing of the value."""
    with pytest.raises(StoreError, match="received_at") as caught:
        next_stamp("yesterday-ish", NOON)
    assert "yesterday" not in caught.value.message


def test_an_answer_over_no_batch_takes_everything_as_new(store: SqlStore) -> None:
    """An answer that read no batch has the watermark that sorts before every stamp."""
    assert store.aggregate(COUNT).watermark == NOTHING_STORED


def test_an_answer_is_marked_with_the_newest_stamp_it_read(
    store: SqlStore, batches: Any, sql: Callable[..., list[Any]]
) -> None:
    """The watermark is the newest stamp of the batches the answer read, any dataset's; a batch
    stored after the answer is stamped after it."""
    batches.store(store, "visits", "v1", _visits("a", 3))
    contact = {"subject": "a0", "event_day": 20_000, "district": "D01", "incident_type": "other"}
    batches.store(store, "contacts", "c1", [contact])
    answer = store.aggregate(COUNT)
    assert answer.watermark == max(_stamps(sql).values())
    batches.store(store, "visits", "v2", _visits("b", 1))
    assert _stamps(sql)["v2"] > answer.watermark


def test_a_gateway_whose_clock_is_behind_stamps_after_the_newest_batch(
    store: SqlStore, store_url: str, catalogue: Catalogue, batches: Any, sql: Callable[..., list[Any]]
) -> None:
    """Two gateways on one database, the second's clock a year behind: its batch is still
    stamped after the first's, so it is newer than any answer that read the first."""
    behind = open_store(store_url, catalogue)
    try:
        behind._stamper = Stamper(behind._schema.batches, clock=lambda: NOON - dt.timedelta(days=365))
        batches.store(store, "visits", "v1", _visits("a", 3))
        answer = store.aggregate(COUNT)
        batches.store(behind, "visits", "v2", _visits("b", 3))
    finally:
        behind.close()
    stamps = _stamps(sql)
    assert stamps["v2"] > stamps["v1"] == answer.watermark


@pytest.fixture
def two_gateways(postgres_base_url: str, catalogue: Catalogue) -> Iterator[tuple[SqlStore, SqlStore, str]]:
    """Two stores (two gateway processes' worth) on one fresh PostgreSQL schema, and its URL."""
    with fresh_postgres_schema(postgres_base_url, prefix="stamp_test") as url:
        first = open_store(url, catalogue)
        second = open_store(url, catalogue)
        try:
            yield first, second, url
        finally:
            first.close()
            second.close()


@pytest.mark.postgres
def test_a_batch_begun_first_and_committed_last_is_newer_than_an_answer_between(
    two_gateways: tuple[SqlStore, SqlStore, str],
    batches: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Gateway one begins batch "slow" and is held after its rows; gateway two stores "fast"
    and commits; an answer reads "fast" but not "slow"; then "slow" commits. Its people were not
    in the answer, so they must be newer than the answer's watermark, though its transaction
    began (and once took its clock reading) before "fast" and its host's clock is behind."""
    slow_store, fast_store, _ = two_gateways
    slow_store._stamper = Stamper(slow_store._schema.batches, clock=lambda: NOON - dt.timedelta(days=1))
    rows_in, release = threading.Event(), threading.Event()
    real_insert = store_sql.insert_rows

    def held_insert(conn: Any, table: Any, rows: Rows) -> None:
        real_insert(conn, table, rows)
        if rows.values and rows.values[0][0] == "slow":
            rows_in.set()
            assert release.wait(30)

    monkeypatch.setattr(store_sql, "insert_rows", held_insert)
    slow = threading.Thread(target=batches.store, args=(slow_store, "visits", "slow", _visits("s", 4)))
    slow.start()
    try:
        assert rows_in.wait(30)
        batches.store(fast_store, "visits", "fast", _visits("f", 20))
        answer = fast_store.aggregate(COUNT)
    finally:
        release.set()
        slow.join(30)
    assert answer.total.subjects == 20
    everyone = fast_store.aggregate(COUNT)
    assert everyone.total.subjects == 24 and everyone.watermark > answer.watermark
    since = [(CellPredicate("visits"), answer.watermark)]
    assert fast_store.ledger_newcomers("visits", since) == [4]


@pytest.mark.postgres
def test_concurrent_batches_from_two_gateways_are_stamped_in_commit_order(
    two_gateways: tuple[SqlStore, SqlStore, str], batches: Any
) -> None:
    """Many batches stored at once through two gateways: every stamp is distinct, and each
    answer read meanwhile saw exactly the batches stamped at or before its watermark."""
    first, second, url = two_gateways
    answers: list[tuple[int, str]] = []
    done = threading.Event()

    def push(store: SqlStore, prefix: str) -> None:
        for n in range(15):
            batches.store(store, "visits", f"{prefix}{n}", _visits(f"{prefix}{n}-", 2))

    def ask() -> None:
        while not done.is_set():
            answer = first.aggregate(COUNT)
            answers.append((answer.total.records, answer.watermark))

    pushers = [threading.Thread(target=push, args=(s, p)) for s, p in ((first, "x"), (second, "y"))]
    asker = threading.Thread(target=ask)
    asker.start()
    for t in pushers:
        t.start()
    for t in pushers:
        t.join(60)
    done.set()
    asker.join(60)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            stamps = [str(s) for (s,) in conn.execute(text("SELECT received_at FROM batches"))]
    finally:
        engine.dispose()
    assert len(set(stamps)) == len(stamps) == 30
    assert answers
    for records, watermark in answers:
        assert records == 2 * sum(1 for s in stamps if s <= watermark)


def test_a_batch_that_cannot_be_stamped_is_not_stored_and_its_error_quotes_nothing(
    tmp_path: Any, catalogue: Catalogue, batches: Any
) -> None:
    """When the stamp's update fails in the driver, the batch is not stored, and the store error
    carries neither the driver's message nor anything chained that holds it."""
    url = f"sqlite:///{tmp_path / 'g.db'}"
    store = open_store(url, catalogue)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_stamp BEFORE UPDATE ON batches "
                    "BEGIN SELECT RAISE(ABORT, 'person-secret-7'); END"
                )
            )
        with pytest.raises(StoreError) as caught:
            batches.store(store, "visits", "v1", _visits("a", 3))
        chain, seen = [], caught.value
        while seen is not None:
            chain.append(f"{seen} {seen!r}")
            seen = seen.__cause__ or seen.__context__
        assert "person-secret-7" not in " ".join(chain)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM batches")).scalar_one() == 0
            assert conn.execute(text("SELECT count(*) FROM ds_visits")).scalar_one() == 0
    finally:
        store.close()
        engine.dispose()
