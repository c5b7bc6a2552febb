"""Translating database errors without letting row data through.

Driver messages can quote the data: PostgreSQL's DETAIL says "Failing row contains (...)" for a
NOT NULL or CHECK violation and "Key (batch_id)=(...)" for a duplicate; some messages quote the
offending input. ``hide_parameters`` only hides the bound parameters. So the store never chains
the driver's exception: it chains a ``ScrubbedDatabaseError`` that names the error by class, SQLSTATE
and the identifiers involved (table, column, constraint; SQLite's own message, which holds
only identifiers), and raises it outside the ``except``
block so the original is not kept as ``__context__`` either.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

from gateway.errors import GatewayError

T = TypeVar("T")


class ScrubbedDatabaseError(Exception):
    """What went wrong in the database, in identifiers only."""


def describe_failure(exc: BaseException) -> ScrubbedDatabaseError:
    parts = [type(exc).__name__]
    orig = getattr(exc, "orig", None)
    if orig is not None:
        parts.append(f"{type(orig).__module__}.{type(orig).__name__}")
        if isinstance(orig, sqlite3.Error):
            # SQLite's messages name tables, columns and constraints but never a bound value
            # ("CHECK constraint failed: ck_ds_visits_district_len")
            parts.append(f"{getattr(orig, 'sqlite_errorname', '')}: {orig}")
        diag = getattr(orig, "diag", None)
        for attr in ("sqlstate", "table_name", "column_name", "constraint_name"):
            value = getattr(diag, attr, None) if diag is not None else None
            if value:
                parts.append(f"{attr}={value}")
    return ScrubbedDatabaseError(" ".join(parts))


def guarded(
    work: Callable[[], T], error: Callable[[], GatewayError], catch: tuple[type[BaseException], ...]
) -> T:
    """``work()``, with any ``catch`` exception replaced by ``error()`` caused by its description."""
    failure: ScrubbedDatabaseError | None = None
    try:
        return work()
    except catch as exc:
        failure = describe_failure(exc)
    raise error() from failure
