"""PostgreSQL advisory locks (database-wide keys) that order the store's writers across replicas.

- the audit chain: one appender extends the chain at a time;
- the schema: replicas starting together do not race to create the same tables;
- batch commits: batches become visible in the order of their ``received_at`` stamps
  (gateway/store/_watermark.py), held from the stamp to the commit only.

SQLite needs none of them: its write transaction already excludes every other writer.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

from sqlalchemy import Connection, Select, func, select


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


AUDIT_LOCK_KEY = _advisory_key("datashare.audit_log.append")
SCHEMA_LOCK_KEY = _advisory_key("datashare.schema.create")
BATCH_LOCK_KEY = _advisory_key("datashare.batches.commit")


def advisory_lock(conn: Connection, key: int) -> None:
    """Hold PostgreSQL's transaction-scoped advisory lock ``key`` (SQLite: the write
    transaction already excludes every other writer)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_lock_statement(key))


@functools.cache
def _lock_statement(key: int) -> Select[tuple[Any]]:
    # built once per key: building it per call cost more client CPU than running it (~0.25 ms,
    # paid at every batch commit and every audit append)
    return select(func.pg_advisory_xact_lock(key))
