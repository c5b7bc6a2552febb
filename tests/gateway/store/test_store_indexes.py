"""Index profiles: ``ingest`` (lean, the default) and ``query`` (covering), created on a fresh
database and reconciled on an existing one without touching its rows or foreign indexes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.catalogue import Catalogue
from gateway.errors import ConfigError
from gateway.store import DEFAULT_INDEX_PROFILE, SqlStore, open_store

DIMENSIONS = ("district", "age_band", "sex", "presentation")
QUERY_INDEXES = frozenset(
    {"ix_ds_visits_month_subject", "ix_ds_visits_subject_day"}
    | {f"ix_ds_visits_{d}_month_subject" for d in DIMENSIONS}
)
ROW = {
    "subject": "p",
    "event_day": 19_700,
    "district": "D01",
    "age_band": "18-34",
    "sex": "F",
    "presentation": "overdose",
    "stay_hours": 1.0,
}


def _indexes(sql: Callable[..., list[Any]], backend: str, table: str = "ds_visits") -> set[str]:
    if backend == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t AND sql IS NOT NULL"
    else:
        query = "SELECT indexname FROM pg_indexes WHERE tablename = :t AND schemaname = current_schema()"
    return {r[0] for r in sql(query, t=table)}


def _reopen(url: str, catalogue: Catalogue, indexes: str) -> SqlStore:
    store = open_store(url, catalogue, indexes=indexes)
    store.close()
    return store


def test_the_default_profile_is_ingest_with_no_secondary_index(store: SqlStore, sql: Any) -> None:
    """Out of the box a dataset table carries no index: every insert appends and touches nothing else."""
    assert DEFAULT_INDEX_PROFILE == "ingest"
    assert store.index_profile == "ingest"
    assert _indexes(sql, store.backend) == set()


def test_the_query_profile_has_the_covering_grouping_indexes(
    store_url: str, catalogue: Catalogue, sql: Any
) -> None:
    """indexes="query": the month/subject index, one per dimension and the (subject, event_day) probe."""
    store = open_store(store_url, catalogue, indexes="query")
    try:
        assert _indexes(sql, store.backend) == QUERY_INDEXES
    finally:
        store.close()


def test_switching_profiles_creates_and_drops_indexes_and_keeps_rows(
    store: SqlStore, store_url: str, catalogue: Catalogue, batches: Any, sql: Any
) -> None:
    """ingest -> query creates the covering set on the filled table; query -> ingest drops it again;
    the rows are there throughout."""
    batches.store(store, "visits", "b-1", [ROW, {**ROW, "subject": "q"}])
    backend = store.backend
    store.close()
    _reopen(store_url, catalogue, "query")
    assert _indexes(sql, backend) == QUERY_INDEXES
    _reopen(store_url, catalogue, "ingest")
    assert _indexes(sql, backend) == set()
    assert sql("SELECT count(*) FROM ds_visits")[0][0] == 2


def test_reopening_with_the_same_profile_changes_nothing(
    store_url: str, catalogue: Catalogue, sql: Any
) -> None:
    """create_schema on every start is idempotent for the query profile's indexes too."""
    first = open_store(store_url, catalogue, indexes="query")
    backend = first.backend
    first.create_schema()
    first.close()
    _reopen(store_url, catalogue, "query")
    assert _indexes(sql, backend) == QUERY_INDEXES


def test_an_index_added_by_hand_survives_a_profile_switch(
    store: SqlStore, store_url: str, catalogue: Catalogue, sql: Any
) -> None:
    """Only the profiles' own index names are ever dropped: a DBA's index stays."""
    backend = store.backend
    store.close()
    sql("CREATE INDEX dba_visits_sex ON ds_visits (sex)")
    _reopen(store_url, catalogue, "query")
    _reopen(store_url, catalogue, "ingest")
    assert _indexes(sql, backend) == {"dba_visits_sex"}


def test_an_unknown_profile_is_a_config_error_naming_the_key(store_url: str, catalogue: Catalogue) -> None:
    """A typo in the profile stops start-up with a message that names store.indexes."""
    with pytest.raises(ConfigError, match=r"^store\.indexes: must be one of ingest, query$"):
        open_store(store_url, catalogue, indexes="fast")
