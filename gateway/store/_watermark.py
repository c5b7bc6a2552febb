"""Batch stamps and an answer's data watermark: what "stored after this answer" means (issue 5).

The release ledger keeps, per released cell, the watermark of the answer that released it: the
newest ``received_at`` among the batches the aggregate read. The newcomer checks then take every
batch stamped after it as not released (``_ledger.newcomer_statement``: records stored since, and
a link's "then" side, the other dataset's batches stamped at or before it). That is sound only if
every batch the aggregate did NOT read is stamped after every batch it did read, whatever order
batch transactions began, were stamped or committed in, on however many gateway hosts, with
whatever clocks. The audit entry's time, taken after the aggregate, was not: a batch committed
between the read and the entry counted as released though the answer never held it, so the
next answer minus this one would isolate its people.

So batches are stamped in the order they become visible:

- ``received_at`` is written last in the batch's transaction, after its rows (``stamp``): the
  newest stored stamp plus 1 µs, or the clock if that is later. A clock behind the stored stamps
  (another host's, or one stepped back) only moves the stamp to just after the newest: a stamp is
  a place in commit order first, a time of day second.
- PostgreSQL: under a transaction-scoped advisory lock (``BATCH_LOCK_KEY``, database-wide, so every
  gateway on the database takes turns), held from the stamp to the commit only, never during the
  COPY: one index seek, one update by primary key, the commit. A commit is visible before the
  transaction releases its locks, so the next holder's READ COMMITTED read of the newest stamp
  sees it, and stamps increase in commit order.
- SQLite: the write transaction excludes every other writer from BEGIN IMMEDIATE to commit, so
  the same two statements need no lock.

Then the batches any snapshot sees are a prefix of the stamp order, and an answer's watermark is
the newest stamp its own snapshot sees (``with_watermark``: a column of the aggregate's total
statement), ``NOTHING_STORED`` when it sees none. Every batch the answer did not read compares
newer. (When the cells and the total are read on two connections, ``_paired`` keeps the pair only
if both read the same rows, so the total's watermark describes the cells' rows too.)

Batches stored by a gateway from before this stamping are kept as they were stamped; migration
0005, which adds the index the newest-stamp read uses, also stops such a gateway from writing
to the store (it refuses a revision it does not know).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Dialect, Label, Table, func, select

from gateway.errors import StoreError
from gateway.store._aggregate import AggregateStatements
from gateway.store._failures import ScrubbedDatabaseError, describe_failure
from gateway.store._locks import BATCH_LOCK_KEY

NOTHING_STORED = ""
"""The watermark of an answer that read no batch: sorts before every stamp."""

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_STEP = dt.timedelta(microseconds=1)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def next_stamp(newest: str | None, now: dt.datetime) -> str:
    """The stamp of the batch committing next: ``now``, or just after ``newest`` (the newest
    stored stamp, None for none) when that is not earlier."""
    stamp = now.astimezone(dt.UTC).replace(tzinfo=None)
    if newest:
        try:
            after = dt.datetime.strptime(newest, _FORMAT) + _STEP
        except ValueError:
            raise StoreError("store: the batch register holds a received_at that is not a stamp") from None
        stamp = max(stamp, after)
    return stamp.strftime(_FORMAT)


class Stamper:
    """Stamps a batch's ``received_at`` as the last statement of its transaction (see module doc).

    Through the driver's cursor, as the bulk insert is (``_bulk``): the three small statements
    cost ~0.55 ms of gateway CPU a batch through SQLAlchemy, ~0.3 ms through the cursor
    (PostgreSQL, 1,000-row batches; the store step's own CPU is ~3.5 ms). Driver errors are
    described in identifiers only, as ``_failures`` does for the rest of the store."""

    def __init__(self, batches: Table, clock: Callable[[], dt.datetime] = utc_now) -> None:
        self._clock = clock
        self._table = batches.name

    def stamp(self, conn: Connection, batch_id: str) -> str:
        """Stamp the batch ``batch_id`` (already inserted in ``conn``'s write transaction); the
        transaction must commit straight after, as the PostgreSQL lock is held until it ends."""
        failure: ScrubbedDatabaseError | None = None
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            stamp = self._stamp(cursor, conn.dialect, batch_id)
        except conn.dialect.loaded_dbapi.Error as exc:  # not chained: its message may quote a value
            failure = describe_failure(exc)
        else:
            return stamp
        finally:
            cursor.close()
        raise StoreError("store: batch could not be stamped") from failure

    def _stamp(self, cursor: Any, dialect: Dialect, batch_id: str) -> str:
        postgres = dialect.name == "postgresql"
        mark = "%s" if postgres else "?"
        table = dialect.identifier_preparer.quote(self._table)
        if postgres:  # each statement takes its own snapshot (READ COMMITTED): the next sees
            # every batch committed by the lock's earlier holders
            cursor.execute(f"SELECT pg_advisory_xact_lock({mark})", (BATCH_LOCK_KEY,))
        cursor.execute(f"SELECT max(received_at) FROM {table}")  # noqa: S608 - a quoted table name
        newest = cursor.fetchone()[0]
        stamp = next_stamp(None if newest is None else str(newest), self._clock())
        cursor.execute(f"UPDATE {table} SET received_at = {mark} WHERE batch_id = {mark}", (stamp, batch_id))  # noqa: S608
        return stamp


def watermark_column(batches: Table) -> Label[str]:
    """The newest stamp the statement's snapshot sees, or NOTHING_STORED."""
    newest = select(func.max(batches.c.received_at)).scalar_subquery()
    return func.coalesce(newest, NOTHING_STORED).label("watermark")


def with_watermark(statements: AggregateStatements, batches: Table) -> AggregateStatements:
    """The statements with the watermark as the last column of the totals (both of them, or the
    cells' statement whose grand-total grouping set is the fast path's total), read in the same
    statement as the figures so it describes exactly the batches they counted."""
    column = watermark_column(batches)
    fast, cells_fast = statements.total_fast, statements.cells_fast
    if statements.combined and cells_fast is not None:  # its () grouping set is the total
        cells_fast = cells_fast.add_columns(column)
    return dataclasses.replace(
        statements,
        total=statements.total.add_columns(column),
        total_fast=None if fast is None else fast.add_columns(column),
        cells_fast=cells_fast,
    )
