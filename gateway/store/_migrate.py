"""Schema migrations (Alembic, gateway/store/migrations): where a database stands, bringing it
to head, and the start-up check.

Two kinds of tables, two mechanisms. The fixed tables (batches, audit_log, release_ledger) and
changes to the layout of dataset tables are Alembic revisions, written by hand because dataset
tables come from the catalogue: a revision that changes them does so to every ``ds_*`` table
present. A dataset table the catalogue adds later is created at start-up at the current layout
(``create_all``), which is what head describes.

``[store] migrate``: ``auto`` upgrades at start-up (the default for SQLite, the embedded
single-process setup); ``check`` refuses to start on a database behind head and names the
command that upgrades it (the default for PostgreSQL, where replicas share one database and an
operator should choose the moment: ``gateway db upgrade``). A database without any table is a
fresh store and is created at head either way. Upgrades run in the caller's transaction, under
the schema lock, so replicas starting together do not race.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from gateway.errors import ConfigError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MigrateMode = Literal["auto", "check"]
MIGRATE_MODES: tuple[MigrateMode, ...] = ("auto", "check")
VERSION_TABLE = "alembic_version"


def default_migrate_mode(backend: str) -> MigrateMode:
    """``auto`` for SQLite (embedded, one process), ``check`` for PostgreSQL (shared)."""
    return "auto" if backend == "sqlite" else "check"


@dataclass(frozen=True)
class MigrationState:
    current: str | None  # None: never migrated (a fresh database, or one made before Alembic)
    head: str
    empty: bool  # no table at all

    @property
    def at_head(self) -> bool:
        return self.current == self.head


def _config(conn: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    return config


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    if head is None:  # pragma: no cover - the package ships its revisions
        raise ConfigError("store: no migrations found")
    return head


def migration_state(conn: Connection) -> MigrationState:
    current = MigrationContext.configure(conn).get_current_revision()
    tables = [t for t in inspect(conn).get_table_names() if t != VERSION_TABLE]
    return MigrationState(current=current, head=head_revision(), empty=not tables)


def upgrade(conn: Connection) -> None:
    """Run every revision after the database's to head, on ``conn`` (in its transaction)."""
    state = migration_state(conn)
    known = {rev.revision for rev in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()}
    if state.current is not None and state.current not in known:
        raise ConfigError(_unknown(state.current))
    if conn.dialect.name == "postgresql":
        # a backfill over a large table may take longer than one request's statement timeout
        conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
    command.upgrade(_config(conn), "head")


def ensure_at_head(conn: Connection, mode: str) -> None:
    """At start-up: nothing if at head; upgrade a fresh database, or any with ``auto``; else
    ConfigError saying which revision the database is at, which one is needed and how to get
    there."""
    state = migration_state(conn)
    if state.at_head:
        return
    if state.empty or mode == "auto":
        upgrade(conn)
        return
    known = {rev.revision for rev in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()}
    if state.current is not None and state.current not in known:
        raise ConfigError(_unknown(state.current))
    at = f"revision {state.current}" if state.current else "a layout older than migrations"
    raise ConfigError(
        f"store: the database schema is at {at}, this gateway needs revision {state.head}; "
        "run `gateway db upgrade --config FILE` with this gateway's settings file first "
        '(or set [store] migrate = "auto")'
    )


def _unknown(revision: str) -> str:
    return (
        f"store: the database schema is at revision {revision}, which this gateway does not know "
        "(made by a newer version?); upgrade the gateway"
    )
