"""Opening a store: which URLs it takes, what it refuses, and the schema-per-test helper."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from gateway.catalogue import Catalogue
from gateway.errors import ConfigError, StoreError
from gateway.store import SqlStore, Store, open_store
from gateway.store.testing import fresh_postgres_schema, postgres_url_for_schema


def test_sql_store_satisfies_the_store_protocol(store: SqlStore) -> None:
    """SqlStore is a Store (checked by mypy here) and answers ping on both backends."""
    as_protocol: Store = store
    as_protocol.ping()


@pytest.mark.parametrize(
    "url",
    ["sqlite://", "sqlite:///:memory:", "mysql://u@h/db", "not a url", "postgresql+asyncpg://u@h/db"],
)
def test_urls_the_store_cannot_use_are_config_errors(url: str, catalogue: Catalogue) -> None:
    """In-memory SQLite (one database per connection), other backends and drivers: ConfigError."""
    with pytest.raises(ConfigError, match=r"^store url: "):
        open_store(url, catalogue)


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path, catalogue: Catalogue) -> None:
    """The database file is switched to WAL, and the store's connections enforce foreign keys."""
    url = f"sqlite:///{tmp_path / 'g.db'}"
    store = open_store(url, catalogue)
    try:
        with store._db.engine.connect() as conn:  # the store's own pooled connection
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    finally:
        store.close()
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_a_schema_that_cannot_be_created_is_a_store_error(tmp_path: Path, catalogue: Catalogue) -> None:
    """A SQLite file in a directory that does not exist: StoreError from open_store, no traceback."""
    with pytest.raises(StoreError, match=r"^store: schema could not be created$"):
        open_store(f"sqlite:///{tmp_path / 'missing' / 'g.db'}", catalogue)


def test_postgres_url_for_schema_keeps_existing_options() -> None:
    """The search_path option is added to any options the URL already carries."""
    url = postgres_url_for_schema("postgresql+psycopg://u:pw@h:5/db?options=-cwork_mem%3D4MB", "s_1")
    parsed = make_url(url)
    assert parsed.query["options"] == "-cwork_mem=4MB -csearch_path=s_1"
    assert parsed.password == "pw"
    with pytest.raises(ValueError, match="schema"):
        postgres_url_for_schema("postgresql+psycopg://u@h/db", "x; DROP")


@pytest.mark.postgres
def test_a_fresh_schema_holds_the_tables_and_is_dropped_after(
    catalogue: Catalogue, postgres_base_url: str
) -> None:
    """Tables land in the fresh schema, not in public, and the schema is gone after the block."""
    base = postgres_base_url
    with fresh_postgres_schema(base, prefix="open_test") as url:
        schema = str(make_url(url).query["options"]).split("=", 1)[1]
        open_store(url, catalogue).close()
        engine = create_engine(base, poolclass=NullPool)
        with engine.connect() as conn:
            tables = {
                r[0]
                for r in conn.execute(
                    text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                    {"s": schema},
                )
            }
    with engine.connect() as conn:
        left = conn.execute(
            text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"), {"s": schema}
        ).scalar()
    engine.dispose()
    assert {"batches", "audit_log", "ds_visits", "ds_contacts"} <= tables
    assert left == 0
