"""The audit log as the source of an agreement's query budget use, and filtered to an auditor's
scope; on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

from gateway.audit import AuditDraft, AuditFilter, AuditScope, QueryBudget, Quota, verify_chain
from gateway.catalogue import Catalogue
from gateway.errors import BudgetSpent
from gateway.store import SqlStore, open_store

DECEMBER = ("2026-12-01T00:00:00.000000Z", "2027-01-01T00:00:00.000000Z")
MONTHLY_3 = Quota("ag-1", QueryBudget(3, "month"))


def _entry(n: int, **changes: Any) -> AuditDraft:
    base = AuditDraft(
        decision_id=f"dec-{n:04d}",
        timestamp=f"2026-12-{1 + n % 28:02d}T09:00:00.{n:06d}Z",
        path="datashare/query/decision",
        principal="spiffe://t/agency/health/analyst/ann",
        agency="health",
        action="query",
        outcome="allow",
        agreement_id="ag-1",
    )
    return dataclasses.replace(base, **changes)


def test_only_allowed_queries_under_the_agreement_in_the_period_count(store: SqlStore) -> None:
    """queries_allowed counts allowed 'query' entries of that agreement with a timestamp in
    [since, until): denied or failed queries, other actions, other agreements and other months
    do not count, and both bounds are exact to the microsecond."""
    store.append_audit(_entry(1))
    store.append_audit(_entry(2, timestamp="2026-12-01T00:00:00.000000Z"))  # first instant: in
    store.append_audit(_entry(3, timestamp="2026-12-31T23:59:59.999999Z"))  # last instant: in
    store.append_audit(_entry(4, timestamp="2027-01-01T00:00:00.000000Z"))  # next month: out
    store.append_audit(_entry(5, timestamp="2026-11-30T23:59:59.999999Z"))  # last month: out
    store.append_audit(_entry(6, outcome="deny"))
    store.append_audit(_entry(7, outcome="error"))
    store.append_audit(_entry(8, action="list_datasets"))
    store.append_audit(_entry(9, agreement_id="ag-2"))
    assert store.queries_allowed("ag-1", *DECEMBER) == 3
    assert store.queries_allowed("ag-2", *DECEMBER) == 1
    assert store.queries_allowed("ag-3", *DECEMBER) == 0


def test_an_allow_past_the_budget_is_not_written(store: SqlStore) -> None:
    """With a quota of 3 a month, the fourth allowed query of December raises BudgetSpent with
    the count and the period in words, and the log is unchanged; a query of January still fits."""
    for n in range(3):
        store.append_audit(_entry(n), quota=MONTHLY_3)
    before = list(store.audit_entries())
    with pytest.raises(BudgetSpent) as spent:
        store.append_audit(_entry(10), quota=MONTHLY_3)
    assert spent.value.usage == {"queries_this_period": 3, "period": "2026-12", "renews_on": "2027-01-01"}
    assert list(store.audit_entries()) == before
    january = store.append_audit(_entry(11, timestamp="2027-01-02T08:00:00.000000Z"), quota=MONTHLY_3)
    assert january.seq == 4
    assert verify_chain(store.audit_entries()).ok


def test_a_quota_does_not_hold_back_denials(store: SqlStore) -> None:
    """Only allowed queries use the budget: denials are recorded without a quota whatever the count."""
    for n in range(3):
        store.append_audit(_entry(n), quota=MONTHLY_3)
    store.append_audit(_entry(5, outcome="deny", reasons=("over budget",)))
    assert [e.outcome for e in store.audit_entries()] == ["allow", "allow", "allow", "deny"]


def test_racing_appenders_never_pass_the_budget(store_url: str, catalogue: Catalogue) -> None:
    """8 replicas (a store each) race 5 allowed queries each against a budget of 7: exactly 7 are
    written, the other 33 get BudgetSpent, and the chain stays whole."""
    stores = [open_store(store_url, catalogue) for _ in range(8)]
    quota = Quota("ag-1", QueryBudget(7, "month"))
    start = threading.Barrier(8)

    def race(worker: int) -> tuple[int, int]:
        start.wait()
        written = refused = 0
        for i in range(5):
            try:
                stores[worker].append_audit(_entry(worker * 10 + i), quota=quota)
                written += 1
            except BudgetSpent:
                refused += 1
        return written, refused

    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(race, range(8)))
        listed = list(stores[0].audit_entries())
    finally:
        for s in stores:
            s.close()
    assert sum(w for w, _ in results) == 7
    assert sum(r for _, r in results) == 33
    assert len(listed) == 7
    assert verify_chain(listed).ok


def _scoped(store: SqlStore) -> Callable[[AuditScope | None], list[str]]:
    def listing(scope: AuditScope | None) -> list[str]:
        return [e.decision_id for e in store.audit_entries(AuditFilter(scope=scope))]

    return listing


def test_a_scope_selects_by_principal_agency_or_agreement(store: SqlStore) -> None:
    """A scope keeps the entries whose principal's agency is in it or whose agreement is in it,
    in seq order; an empty scope keeps nothing; None keeps everything; other filters still apply."""
    store.append_audit(_entry(1, agency="health", agreement_id=""))
    store.append_audit(_entry(2, agency="metro-police", agreement_id="ag-shared"))
    store.append_audit(_entry(3, agency="metro-police", agreement_id="ag-police"))
    store.append_audit(_entry(4, agency="", principal="unauthenticated", agreement_id=""))
    store.append_audit(_entry(5, agency="health", agreement_id="ag-shared", outcome="deny"))
    listing = _scoped(store)
    health = AuditScope(agencies=frozenset({"health"}), agreements=frozenset({"ag-shared"}))
    assert listing(health) == ["dec-0001", "dec-0002", "dec-0005"]
    assert listing(AuditScope()) == []
    assert listing(None) == [f"dec-{n:04d}" for n in range(1, 6)]
    denied = store.audit_entries(AuditFilter(scope=health, outcome="deny"))
    assert [e.decision_id for e in denied] == ["dec-0005"]


def test_the_budget_index_is_added_to_an_existing_audit_log(store_url: str, catalogue: Catalogue) -> None:
    """A database made before the budget index existed gets it at the next start (create_schema)."""
    store = open_store(store_url, catalogue)
    store.close()
    engine = create_engine(store_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX ix_audit_log_budget")
        store = open_store(store_url, catalogue)
        store.close()
        with engine.connect() as conn:
            indexes = {ix["name"]: ix["column_names"] for ix in inspect(conn).get_indexes("audit_log")}
    finally:
        engine.dispose()
    assert indexes["ix_audit_log_budget"] == ["agreement_id", "action", "outcome", "timestamp"]
