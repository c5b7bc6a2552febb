"""One SQLAlchemy engine per store, tuned per backend, and the transactions the store runs in.

SQLite: WAL (readers never block the one writer), synchronous=NORMAL (durable at checkpoints,
never corrupt), foreign keys on, a busy timeout. The sqlite3 module's own transaction handling
is switched off (it does not BEGIN before a SELECT, so a read-then-write is not atomic) and the
store emits ``BEGIN`` itself, ``BEGIN IMMEDIATE`` for writes: a deferred transaction that reads
and then writes can fail with SQLITE_BUSY at the upgrade no matter the busy timeout.

PostgreSQL (psycopg 3): every limit set on purpose (``StoreSettings``, from ``[store]`` in
gateway.toml), so that no request waits without bound and no connection hangs on to a lock:

- a bounded pool: ``pool_size`` connections kept, ``max_overflow`` more under bursts, a request
  waits at most ``pool_timeout_s`` for one (then UNAVAILABLE). Per replica: the gateway runs 16
  request threads and an aggregate reads on two connections, so 5 + 10 covers the busiest case;
  size ``max_connections`` on the server as replicas x (pool_size + max_overflow) + headroom.
- pre-ping on every checkout (one round trip): after a database restart or failover a pooled
  connection is dead, and pre-ping replaces it instead of failing the request that drew it.
- ``pool_recycle_s``: connections are replaced after 30 minutes, before a proxy or firewall
  drops them silently.
- ``connect_timeout_s``: an unreachable server fails a connect in 5 s, not the OS's minutes.
- ``statement_timeout_ms`` (60 s): no query holds a worker forever.
- ``lock_timeout_ms`` (10 s): a statement waiting for a lock (the audit chain's advisory lock,
  a table lock held by a migration) gives up and the request fails as UNAVAILABLE.
- ``idle_in_transaction_timeout_ms`` (60 s): the server ends a session that sits in an open
  transaction doing nothing (a wedged thread), which would otherwise hold its locks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from gateway.errors import ConfigError

Backend = Literal["sqlite", "postgresql"]
_BEGIN_OPTION = "datashare_sqlite_begin"


@dataclass(frozen=True)
class StoreSettings:
    """Connection tuning, built once at start-up; the defaults suit the embedded gateway."""

    pool_size: int = 5
    max_overflow: int = 10
    pool_timeout_s: float = 10.0  # wait for a free pooled connection
    pool_recycle_s: int = 1800
    connect_timeout_s: int = 5  # PostgreSQL: TCP connect and authentication
    statement_timeout_ms: int = 60_000  # PostgreSQL: any one statement
    lock_timeout_ms: int = 10_000  # PostgreSQL: waiting for any one lock
    idle_in_transaction_timeout_ms: int = 60_000  # PostgreSQL: a transaction left open and idle
    busy_timeout_ms: int = 10_000  # SQLite: wait for the write lock
    # SQLite page cache, per connection (so up to pool_size + max_overflow times this): index
    # upkeep on random subject tokens is the ingest bottleneck, and with the 2 MB default most
    # index inserts are a page read
    sqlite_cache_mb: int = 64
    # "auto": upgrade an older database at start-up; "check": refuse to start on one; None: the
    # backend's default, auto for SQLite and check for PostgreSQL (see gateway/store/_migrate.py)
    migrate: Literal["auto", "check"] | None = None


@dataclass
class Database:
    """The engine, which backend it speaks, and how to open read and write transactions."""

    engine: Engine
    backend: Backend
    # SQLite has one writer per file; queueing this process's writers on a lock is fairer and
    # faster than letting them spin in the busy handler. BEGIN IMMEDIATE still guards against
    # other processes.
    _write_lock: threading.Lock | None = None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read-only transaction whose statements all see the same data (cells agree with
        their total). A SQLite read transaction is a snapshot already; PostgreSQL's default,
        READ COMMITTED, takes a new one per statement."""
        with self.engine.connect() as conn:
            if self.backend == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that holds the database's write lock from its first statement.

        PostgreSQL runs it READ COMMITTED whatever the server default: after waiting for an
        advisory lock, the next statement must see what the previous holder committed."""
        lock = self._write_lock if self._write_lock is not None else nullcontext()
        with lock, self.engine.connect() as conn:
            if self.backend == "sqlite":
                conn.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"})
            else:
                conn.execution_options(isolation_level="READ COMMITTED")
            with conn.begin():
                yield conn


def open_database(url: str, settings: StoreSettings) -> Database:
    """Create the engine for ``url``; ConfigError for a URL the store cannot use."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        # not chained: SQLAlchemy's message repeats the URL, password and all
        raise ConfigError("store url: not a database URL") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.get_driver_name() != "pysqlite":
            raise ConfigError("store url: SQLite is supported through the built-in sqlite3 driver only")
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigError("store url: SQLite needs a database file (sqlite:///path/to/file.db)")
        engine = create_engine(
            parsed,
            hide_parameters=True,  # errors chained from the store must not carry row values
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_timeout=settings.pool_timeout_s,
            pool_pre_ping=True,
            connect_args={"timeout": settings.busy_timeout_ms / 1000},
        )
        _tune_sqlite(engine, settings)
        return Database(engine, "sqlite", threading.Lock())
    if backend == "postgresql":
        if parsed.get_driver_name() not in ("psycopg", "psycopg2"):
            raise ConfigError("store url: PostgreSQL is supported through psycopg (postgresql+psycopg://)")
        engine = create_engine(
            parsed.set(drivername="postgresql+psycopg"),
            hide_parameters=True,
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_timeout=settings.pool_timeout_s,
            pool_recycle=settings.pool_recycle_s,
            pool_pre_ping=True,
            connect_args={"connect_timeout": settings.connect_timeout_s},
        )
        _tune_postgres(engine, settings)
        return Database(engine, "postgresql")
    raise ConfigError("store url: only sqlite:/// and postgresql+psycopg:// are supported")


def _tune_sqlite(engine: Engine, settings: StoreSettings) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the store emits BEGIN itself (see module doc)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(settings.busy_timeout_ms)}")
            cursor.execute(f"PRAGMA cache_size=-{int(settings.sqlite_cache_mb) * 1024}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get(_BEGIN_OPTION, "BEGIN"))


def _tune_postgres(engine: Engine, settings: StoreSettings) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            # integers from typed settings, formatted with int(): nothing else reaches the text
            cursor.execute(f"SET statement_timeout = {int(settings.statement_timeout_ms)}")
            cursor.execute(f"SET lock_timeout = {int(settings.lock_timeout_ms)}")
            timeout = int(settings.idle_in_transaction_timeout_ms)
            cursor.execute(f"SET idle_in_transaction_session_timeout = {timeout}")
            # The release ledger's checks are wide statements (dozens of filtered counts or sums):
            # compiling them cost PostgreSQL's JIT more than running them (7.6 s of a 26 s check at
            # 1M rows), and it did not speed up the aggregates measurably (bench/run.py query)
            cursor.execute("SET jit = off")
        dbapi_connection.commit()
