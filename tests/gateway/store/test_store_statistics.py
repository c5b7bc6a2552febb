"""Planner statistics kept up with ingest (gateway/store/_statistics.py): a PostgreSQL dataset table
is analysed once it holds rows and again once as many rows changed as it held, in the background;
SQLite is left alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from gateway.store import SqlStore, _statistics
from gateway.store._statistics import MIN_CHANGED_ROWS, needs_analysis

WAIT_S = 15.0  # the thread looks within a second of a batch; generous for a busy machine


def _visits(prefix: str, n: int) -> list[dict[str, Any]]:
    return [
        {
            "subject": f"{prefix}{i}",
            "event_day": 20_000 + i % 365,
            "district": "D0" + str(1 + i % 4),
            "age_band": "65+",
            "sex": "F",
            "presentation": "other",
            "stay_hours": 1.0,
        }
        for i in range(n)
    ]


def _analyses(sql: Callable[..., list[Any]], table: str) -> tuple[int, float]:
    """(times analysed by anyone but autovacuum, the planner's row count) of ``table``."""
    ((count, reltuples),) = sql(
        "SELECT coalesce(s.analyze_count, 0), c.reltuples FROM pg_class c "
        "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = to_regclass(:name)",
        name=table,
    )
    return int(count), float(reltuples)


def _wait_for(sql: Callable[..., list[Any]], table: str, count: int) -> tuple[int, float]:
    deadline = time.monotonic() + WAIT_S
    seen = _analyses(sql, table)
    while seen[0] < count and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = _analyses(sql, table)
    return seen


def _statistics_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "planner-statistics"]


def test_a_table_never_analysed_is_analysed() -> None:
    """A table the planner has no statistics for (reltuples -1) is analysed after any batch."""
    assert needs_analysis(-1.0, 1)


def test_a_table_is_analysed_again_once_as_many_rows_changed_as_it_held() -> None:
    """Rows changed since the last analysis below the table's size leave it; at its size, analyse."""
    assert not needs_analysis(50_000.0, 49_999)
    assert needs_analysis(50_000.0, 50_000)


def test_a_small_table_is_not_analysed_again_for_a_few_rows() -> None:
    """Below MIN_CHANGED_ROWS changed rows a small table keeps its statistics."""
    assert not needs_analysis(10.0, MIN_CHANGED_ROWS - 1)
    assert needs_analysis(10.0, MIN_CHANGED_ROWS)


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_postgres_dataset_table_is_analysed_as_batches_grow_it(
    store: SqlStore, batches: Any, sql: Callable[..., list[Any]]
) -> None:
    """The first batch gets the new table analysed (the planner's row count goes from -1 to the
    rows stored); a batch of fewer rows than the table holds does not; one that doubles it does."""
    assert _analyses(sql, "ds_visits") == (0, -1.0)

    batches.store(store, "visits", "b1", _visits("a", 1_500))
    assert _wait_for(sql, "ds_visits", 1) == (1, 1_500.0)

    batches.store(store, "visits", "b2", _visits("b", 1_000))  # 1,000 changed < 1,500 held
    time.sleep(2.5)  # two looks' worth: it would have run by now
    assert _analyses(sql, "ds_visits")[0] == 1

    batches.store(store, "visits", "b3", _visits("c", 600))  # 1,600 changed >= 1,500 held
    assert _wait_for(sql, "ds_visits", 2) == (2, 3_100.0)


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_an_analysis_due_soon_after_the_last_waits_then_runs_unasked(
    store: SqlStore, batches: Any, sql: Callable[..., list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that doubles the table right after its analysis does not start another one within
    REANALYSE_AFTER_S (a bulk load would run one a second); once that time has passed, the
    analysis runs without any further batch."""
    monkeypatch.setattr(_statistics, "REANALYSE_AFTER_S", 6.0)
    batches.store(store, "visits", "b1", _visits("a", 1_500))
    assert _wait_for(sql, "ds_visits", 1) == (1, 1_500.0)
    held_back_from = time.monotonic()

    batches.store(store, "visits", "b2", _visits("b", 1_600))  # 1,600 changed >= 1,500 held
    time.sleep(2.5)  # two looks' worth: without the spacing it would have run by now
    assert _analyses(sql, "ds_visits")[0] == 1

    assert _wait_for(sql, "ds_visits", 2) == (2, 3_100.0)
    assert time.monotonic() - held_back_from >= 6.0 - 1.0


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_a_held_back_analysis_survives_a_failing_database_meanwhile(
    store: SqlStore, batches: Any, sql: Callable[..., list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a table is held back its counters are not looked at, so a database that fails
    meanwhile does not cancel the analysis: it runs once its time is up, with no further batch."""
    monkeypatch.setattr(_statistics, "REANALYSE_AFTER_S", 4.0)
    batches.store(store, "visits", "b1", _visits("a", 1_500))
    assert _wait_for(sql, "ds_visits", 1) == (1, 1_500.0)
    good = _statistics._PLANNER_ROWS
    monkeypatch.setattr(_statistics, "_PLANNER_ROWS", text("SELECT 1/0"))
    batches.store(store, "visits", "b2", _visits("b", 1_600))
    time.sleep(1.5)  # the looks after the batch would fail while the table is held back
    monkeypatch.setattr(_statistics, "_PLANNER_ROWS", good)
    assert _wait_for(sql, "ds_visits", 2) == (2, 3_100.0)


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_closing_the_store_stops_the_statistics_thread(store: SqlStore, batches: Any) -> None:
    """The background thread a batch started ends when the store is closed."""
    before = set(_statistics_threads())
    batches.store(store, "visits", "b1", _visits("a", 10))
    started = set(_statistics_threads()) - before
    assert len(started) == 1

    store.close()

    assert not any(thread.is_alive() for thread in started)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_sqlite_store_starts_no_statistics_thread(store: SqlStore, batches: Any) -> None:
    """SQLite's planner does not use sampled statistics unless asked: nothing runs for it."""
    before = set(_statistics_threads())
    batches.store(store, "visits", "b1", _visits("a", 10))
    assert set(_statistics_threads()) == before
