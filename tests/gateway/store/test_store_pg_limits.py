"""PostgreSQL connection limits set on purpose (gateway/store/_engine.py): every pooled session
carries the configured timeouts, and a lock held elsewhere fails the waiting write closed after
lock_timeout instead of hanging the request."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from gateway.audit import AuditDraft
from gateway.catalogue import Catalogue
from gateway.errors import AuditWriteError
from gateway.store import StoreSettings, open_store
from gateway.store._sql import AUDIT_LOCK_KEY, SqlStore
from gateway.store.testing import fresh_postgres_schema

pytestmark = pytest.mark.postgres

LIMITS = StoreSettings(statement_timeout_ms=4321, lock_timeout_ms=300, idle_in_transaction_timeout_ms=7000)


@pytest.fixture
def limited(postgres_base_url: str, catalogue: Catalogue) -> Iterator[tuple[SqlStore, str]]:
    with fresh_postgres_schema(postgres_base_url, prefix="limits") as url:
        store = open_store(url, catalogue, LIMITS)
        try:
            yield store, url
        finally:
            store.close()


def test_every_session_carries_the_configured_timeouts(limited: tuple[SqlStore, str]) -> None:
    """A connection drawn from the store's pool has the statement, lock and idle-in-transaction
    timeouts of its settings."""
    store, _url = limited
    with store._db.read() as conn:
        shown = [
            conn.execute(text(f"SHOW {name}")).scalar_one()
            for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
        ]
    assert shown == ["4321ms", "300ms", "7s"]


def _draft() -> AuditDraft:
    return AuditDraft(
        decision_id="dec-lock",
        timestamp="2026-03-01T10:00:00.000000Z",
        path="datashare/query/decision",
        principal="spiffe://datashare.local/agency/health/analyst/a",
        agency="health",
        action="query",
        outcome="allow",
        reasons=("ok",),
        agreement_id="ag-1",
        purpose="overdose-prevention",
        policy_revision="rev",
        query_fingerprint="fp",
        cells_released=0,
        cells_withheld=0,
        latency_ms=1.0,
        input={},
        result={},
    )


def test_a_held_lock_fails_the_audit_append_after_lock_timeout(limited: tuple[SqlStore, str]) -> None:
    """While another session holds the audit chain's lock, an append gives up after the lock
    timeout with AuditWriteError (nothing released), not after the statement timeout or never;
    once the lock is free, appends work again."""
    store, url = limited
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (AUDIT_LOCK_KEY,))
        started = time.monotonic()
        with pytest.raises(AuditWriteError):
            store.append_audit(_draft())
        waited = time.monotonic() - started
        holder.execute("SELECT pg_advisory_unlock(%s)", (AUDIT_LOCK_KEY,))
    assert 0.25 <= waited < 4.0
    assert store.append_audit(_draft()).seq == 1
