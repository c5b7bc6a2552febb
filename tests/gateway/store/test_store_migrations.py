"""Schema migrations (Alembic): a fresh store is created at head and matches the SQLAlchemy
metadata exactly; a store made before migrations, with data, is refused under migrate="check",
upgraded by upgrade_database or migrate="auto", and then answers as a store made at head."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, inspect
from sqlalchemy.pool import NullPool

from gateway.catalogue import Catalogue
from gateway.errors import ConfigError
from gateway.query import MeasureRef, QuerySpec
from gateway.store import StoreSettings, database_revision, head_revision, open_store, upgrade_database
from gateway.store._schema import build_schema, subject_n

QUESTION = QuerySpec(
    "visits", (MeasureRef("subjects"), MeasureRef("sum", "stay_hours")), ("district", "presentation")
)


def _diff(url: str, metadata: MetaData) -> list[Any]:
    """What Alembic's autogenerate finds between the database and ``metadata``."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), metadata))
    finally:
        engine.dispose()


def _visits(n: int) -> list[dict[str, Any]]:
    rnd = random.Random(11)
    return [
        {
            "subject": f"person-{rnd.randrange(40)}",
            "event_day": 19_600 + rnd.randrange(60),
            "district": rnd.choice(("D01", "D02", "D03")),
            "age_band": "18-34",
            "sex": rnd.choice(("F", "M")),
            "presentation": rnd.choice(("overdose", "other")),
            "stay_hours": rnd.randrange(0, 288) / 4,
        }
        for _ in range(n)
    ]


def _make_old_store(url: str, catalogue: Catalogue, batches: Any, rows: list[dict[str, Any]]) -> None:
    """The layout stores had before migrations came in: no alembic_version, no release ledger,
    no budget index on the audit log, no audit checkpoints nor event schema v2 columns, no index
    on the batches' stamps, dataset tables without subject_h nor subject_n and with a foreign key to
    batches (on both backends); and data in it, written as the store wrote it then."""
    old = build_schema(catalogue, backend="sqlite")  # the foreign key included
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            old.metadata.create_all(conn)
            conn.exec_driver_sql("DROP TABLE release_ledger")
            conn.exec_driver_sql("DROP INDEX ix_audit_log_budget")
            conn.exec_driver_sql("DROP INDEX ix_batches_received_at")
            conn.exec_driver_sql("DROP TABLE audit_checkpoints")  # and the audit log of event schema v1
            for column in ("schema_version", "erased", "masked", "digests"):
                conn.exec_driver_sql(f"ALTER TABLE audit_log DROP COLUMN {column}")
            for target in old.datasets.values():
                conn.exec_driver_sql(f"ALTER TABLE {target.table.name} DROP COLUMN subject_h")
                conn.exec_driver_sql(f"ALTER TABLE {target.table.name} DROP COLUMN subject_n")
            meta = batches.meta("visits", "old-1", len(rows))
            conn.execute(
                old.batches.insert(),
                {**meta.__dict__, "received_at": "2025-01-01T00:00:00.000000Z"},
            )
            columns = batches.columns("visits", rows)
            table = old.datasets["visits"].table
            conn.execute(
                table.insert(),
                [
                    {
                        "batch_id": "old-1",
                        "subject": columns.subjects[i],
                        "event_day": columns.event_days[i],
                        "event_month": "2023-09",
                        **{name: values[i] for name, values in columns.dimensions.items()},
                        **{name: values[i] for name, values in columns.measures.items()},
                    }
                    for i in range(len(rows))
                ],
            )
    finally:
        engine.dispose()


def test_a_fresh_store_is_at_head_and_matches_the_metadata(store_url: str, catalogue: Catalogue) -> None:
    """A store created on an empty database is stamped at the migrations' head, and autogenerate
    finds no difference between it and the SQLAlchemy metadata (the migrations made the fixed
    tables, so they agree with the models)."""
    store = open_store(store_url, catalogue, StoreSettings(migrate="check"))
    try:
        assert database_revision(store_url).current == head_revision()
        assert _diff(store_url, store._schema.metadata) == []
    finally:
        store.close()


def test_an_old_store_is_refused_under_check_and_named_the_command(
    store_url: str, catalogue: Catalogue, batches: Any
) -> None:
    """With migrate = "check", a store made before migrations stops the start with a message that
    says where it stands, what is needed and which command gets there; nothing is changed."""
    _make_old_store(store_url, catalogue, batches, _visits(50))
    backend = "sqlite" if store_url.startswith("sqlite") else "postgresql"
    assert _diff(store_url, build_schema(catalogue, backend=backend).metadata) != []  # the check can fail
    with pytest.raises(ConfigError, match=r"older than migrations.*needs revision .*gateway db upgrade"):
        open_store(store_url, catalogue, StoreSettings(migrate="check"))
    state = database_revision(store_url)
    assert state.current is None
    assert not state.empty


@pytest.mark.parametrize("how", ["command", "auto"])
def test_an_old_store_with_data_upgrades_and_answers_as_a_new_one(
    how: str,
    store_url: str,
    catalogue: Catalogue,
    batches: Any,
    tmp_path: Any,
    sql: Callable[..., list[Any]],
) -> None:
    """Upgraded (by upgrade_database, or at start-up under migrate = "auto"), an old store gains
    subject_h and subject_n filled in for its old rows, loses nothing, matches the metadata, takes new batches,
    and gives the same cells and noise digests as a store that held the same rows from the start."""
    rows = _visits(120)
    _make_old_store(store_url, catalogue, batches, rows)
    if how == "command":
        before, after = upgrade_database(store_url)
        assert (before.current, after.current) == (None, head_revision())
    store = open_store(store_url, catalogue, StoreSettings(migrate="auto" if how == "auto" else "check"))
    fresh = open_store(f"sqlite:///{tmp_path / 'fresh.db'}", catalogue)
    try:
        assert _diff(store_url, store._schema.metadata) == []
        assert sql("SELECT count(*) FROM ds_visits WHERE subject_h IS NULL OR subject_n IS NULL") == [(0,)]
        assert sorted(n for (n,) in sql("SELECT subject_n FROM ds_visits")) == sorted(
            subject_n(batches.token(row["subject"])) for row in rows
        )
        batches.store(fresh, "visits", "old-1", rows)
        upgraded_answer = store.aggregate(QUESTION, digest=True)
        fresh_answer = fresh.aggregate(QUESTION, digest=True)
        assert upgraded_answer.cells == fresh_answer.cells
        assert upgraded_answer.total == fresh_answer.total
        batches.store(store, "visits", "new-1", rows[:10])  # and it takes new batches
        assert sql("SELECT count(*) FROM ds_visits") == [(130,)]
    finally:
        store.close()
        fresh.close()


@pytest.mark.postgres
def test_postgres_dataset_tables_lose_the_per_row_foreign_key(
    postgres_base_url: str, catalogue: Catalogue, batches: Any
) -> None:
    """On PostgreSQL the upgrade drops the dataset tables' foreign key to batches (a trigger per
    inserted row); SQLite keeps its own (see the next test)."""
    from gateway.store.testing import fresh_postgres_schema

    with fresh_postgres_schema(postgres_base_url, prefix="migr") as url:
        _make_old_store(url, catalogue, batches, _visits(5))
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                assert inspect(conn).get_foreign_keys("ds_visits") != []  # the old layout had one
            upgrade_database(url)
            with engine.connect() as conn:
                assert inspect(conn).get_foreign_keys("ds_visits") == []
        finally:
            engine.dispose()


def test_sqlite_keeps_the_batch_foreign_key(tmp_path: Any, catalogue: Catalogue) -> None:
    """A SQLite store's dataset rows still reference batches by a checked foreign key."""
    url = f"sqlite:///{tmp_path / 'g.db'}"
    open_store(url, catalogue).close()
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            assert [fk["referred_table"] for fk in inspect(conn).get_foreign_keys("ds_visits")] == ["batches"]
    finally:
        engine.dispose()


def test_a_revision_this_gateway_does_not_know_is_refused(
    store_url: str, catalogue: Catalogue, sql: Callable[..., list[Any]]
) -> None:
    """A store stamped by a newer gateway (a revision not among ours) is refused, under auto
    too: an older gateway must not write to a layout it does not know."""
    open_store(store_url, catalogue).close()
    sql("UPDATE alembic_version SET version_num = '9999'")
    for mode in ("auto", "check"):  # both refuse
        with pytest.raises(ConfigError, match=r"revision 9999, which this gateway does not know"):
            open_store(store_url, catalogue, StoreSettings(migrate=mode))
    with pytest.raises(ConfigError, match=r"does not know"):
        upgrade_database(store_url)
