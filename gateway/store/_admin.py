"""The operator's schema commands (``gateway db upgrade``, ``gateway db current``): on the
database alone, without the catalogue; the same lock and transaction as the start-up check."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from gateway.errors import StoreError
from gateway.store._engine import StoreSettings, open_database
from gateway.store._failures import guarded
from gateway.store._migrate import MigrationState, migration_state, upgrade
from gateway.store._sql import schema_lock


def upgrade_database(
    url: str, settings: StoreSettings | None = None
) -> tuple[MigrationState, MigrationState]:
    """Bring the database at ``url`` to the migrations' head; its state before and after.
    ConfigError for a URL it cannot use or a revision it does not know, StoreError if the
    database fails (then nothing of the upgrade is kept: one transaction)."""
    database = open_database(url, settings or StoreSettings())

    def work() -> tuple[MigrationState, MigrationState]:
        with database.write() as conn:
            schema_lock(conn)
            before = migration_state(conn)
            if not before.at_head:
                upgrade(conn)
            return before, migration_state(conn)

    try:
        return guarded(work, lambda: StoreError("store: the upgrade failed"), (SQLAlchemyError,))
    finally:
        database.engine.dispose()


def database_revision(url: str, settings: StoreSettings | None = None) -> MigrationState:
    """Where the database at ``url`` stands against the migrations' head."""
    database = open_database(url, settings or StoreSettings())

    def work() -> MigrationState:
        with database.read() as conn:
            return migration_state(conn)

    try:
        return guarded(work, lambda: StoreError("store: database unreachable"), (SQLAlchemyError,))
    finally:
        database.engine.dispose()
