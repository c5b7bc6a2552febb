"""The audit log in the database: a strictly linear hash chain, tamper-evident, failing closed."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from gateway.audit import AuditDraft, AuditEntry, AuditFilter, verify_chain
from gateway.catalogue import Catalogue
from gateway.errors import AuditWriteError, InvalidRequest
from gateway.store import SqlStore, open_store
from gateway.store.testing import postgres_url_for_schema

WRITE_ERROR = "audit log: entry could not be written"


def _draft(i: int, **changes: Any) -> AuditDraft:
    base = AuditDraft(
        decision_id=f"dec-{i:04d}",
        timestamp=f"2026-03-{1 + i % 28:02d}T10:{i % 60:02d}:00.{i:06d}Z",
        path="datashare/query/decision",
        principal=f"spiffe://consortium.example/agency/health/analyst/a{i % 3}",
        agency=("health", "metro-police")[i % 2],
        action="query",
        outcome=("allow", "deny", "error")[i % 3],
        reasons=("agreement ag-1 allows it",)
        if i % 3 == 0
        else ("dimension 'postcode' not allowed", "k ≥ 10"),
        agreement_id=f"ag-{i % 4}",
        purpose="overdose-prevention",
        policy_revision="0123456789abcdef",
        query_fingerprint=f"fp{i}",
        cells_released=i * 3,
        cells_withheld=i % 5,
        latency_ms=0.1 * i + 0.2,  # not exact in binary: the canonical form must cope
        input={
            "request": {"dataset": "ed_visits", "group_by": ["district", "month"]},
            "n": i,
            "w": 0.30000000000000004,
        },
        result={"allow": i % 3 == 0, "obligations": {"k": 10, "round_to": 5}},
    )
    return dataclasses.replace(base, **changes)


def _append(store: SqlStore, n: int) -> list[AuditEntry]:
    return [store.append_audit(_draft(i)) for i in range(n)]


def test_fifty_entries_form_a_valid_chain(store: SqlStore) -> None:
    """50 appends: seq 1..50, each linked to the one before, verify ok; the listing equals what
    append returned."""
    appended = _append(store, 50)
    listed = list(store.audit_entries())
    assert [e.seq for e in listed] == list(range(1, 51))
    assert listed == appended
    assert listed[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(listed))
    result = verify_chain(listed)
    assert (result.ok, result.entries_checked, result.head_hash) == (True, 50, listed[-1].hash)


def test_awkward_values_read_back_hashing_the_same(store: SqlStore) -> None:
    """Unicode, floats with long reprs, nested tuples and big integers survive the database intact."""
    draft = _draft(
        1,
        reasons=("Zoë's request: «district» ✓", ""),
        latency_ms=1234.56789,
        input={"x": (1, (2.5, None)), "tiny": 1e-300, "big": 2**62, "tab\tkey": "line\nbreak\u0001"},
        result={"ε": -0.0, "list": []},
    )
    store.append_audit(draft)
    (entry,) = store.audit_entries()
    assert entry.latency_ms == 1234.568
    assert entry.input["x"] == [1, [2.5, None]]
    assert verify_chain([entry]).ok


COLUMN_EDITS = {
    "decision_id": "'dec-forged'",
    "timestamp": "'2020-01-01T00:00:00.000000Z'",
    "path": "'datashare/other'",
    "principal": "'spiffe://consortium.example/agency/health/analyst/someone-else'",
    "agency": "'oversight'",
    "action": "'audit.list'",
    "outcome": "'forged'",
    "reasons": "'[]'",
    "agreement_id": "'ag-9'",
    "purpose": "'marketing'",
    "policy_revision": "'ffffffffffffffff'",
    "query_fingerprint": "'fp-forged'",
    "cells_released": "cells_released + 1",
    "cells_withheld": "cells_withheld + 1",
    "latency_ms": "latency_ms + 0.0001",
    "input": r"""'{"forged"\:true}'""",  # \: keeps text() from reading a bind parameter
    "result": r"""'{"allow"\:true}'""",
    "prev_hash": "'" + "f" * 64 + "'",
    "hash": "'" + "e" * 64 + "'",
}


@pytest.mark.parametrize("column", COLUMN_EDITS)
def test_an_edited_column_is_named(store: SqlStore, sql: Any, column: str) -> None:
    """Changing any one column of entry 25 in SQL makes verify fail at entry 25."""
    _append(store, 50)
    sql(f"UPDATE audit_log SET {column} = {COLUMN_EDITS[column]} WHERE seq = 25")
    result = verify_chain(store.audit_entries())
    assert (result.ok, result.first_bad_seq) == (False, 25)
    assert result.problem.startswith("entry 25: ")
    assert result.head_hash == next(store.audit_entries(AuditFilter(decision_id="dec-0023"))).hash


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("input", '{"n": 24, "request": {}}'),
        ("input", "not json"),
        ("reasons", '["a", "b"]'),
        ("reasons", "x"),
    ],
    ids=["input-reformatted", "input-unparseable", "reasons-reformatted", "reasons-unparseable"],
)
def test_json_columns_edited_out_of_canonical_form_are_named(
    store: SqlStore, sql: Any, column: str, value: str
) -> None:
    """Stored JSON that is not byte-for-byte what the store writes counts as an edit."""
    _append(store, 30)
    sql(f"UPDATE audit_log SET {column} = :value WHERE seq = 12", value=value)
    result = verify_chain(store.audit_entries())
    assert (result.ok, result.first_bad_seq) == (False, 12)


def test_the_problem_is_said_in_words(store: SqlStore, sql: Any) -> None:
    """An edited field reads 'hash does not match its contents'; a forged prev_hash names the link."""
    _append(store, 30)
    sql("UPDATE audit_log SET outcome = 'forged' WHERE seq = 17")
    assert verify_chain(store.audit_entries()).problem == "entry 17: hash does not match its contents"


def test_a_rehashed_edit_breaks_the_next_link(store: SqlStore, sql: Any) -> None:
    """A forger who edits entry 17 and recomputes its hash is caught at entry 18."""
    from gateway.audit import chain_hash

    _append(store, 30)
    (original,) = store.audit_entries(AuditFilter(decision_id="dec-0016"))
    forged = dataclasses.replace(original, cells_released=original.cells_released + 100)
    new_hash = chain_hash(forged.prev_hash, forged, forged.seq)
    sql(
        "UPDATE audit_log SET cells_released = :c, hash = :h WHERE seq = 17",
        c=forged.cells_released,
        h=new_hash,
    )
    result = verify_chain(store.audit_entries())
    assert (result.first_bad_seq, result.problem) == (18, "entry 18: prev_hash does not match entry 17")


def test_a_deleted_entry_is_named(store: SqlStore, sql: Any) -> None:
    """Removing entry 20 is reported as a gap at 20."""
    _append(store, 30)
    sql("DELETE FROM audit_log WHERE seq = 20")
    result = verify_chain(store.audit_entries())
    assert (result.ok, result.first_bad_seq) == (False, 20)
    assert result.problem == "entry 20 missing (sequence jumps from 19 to 21)"


def test_swapped_entries_are_named(store: SqlStore, sql: Any) -> None:
    """Exchanging the contents (all but seq) of entries 10 and 11 is caught at entry 10."""
    _append(store, 30)
    columns = list(COLUMN_EDITS)
    row10 = sql(f"SELECT {', '.join(columns)} FROM audit_log WHERE seq = 10")[0]
    row11 = sql(f"SELECT {', '.join(columns)} FROM audit_log WHERE seq = 11")[0]
    assignments = ", ".join(f"{c} = :{c}" for c in columns)
    sql(f"UPDATE audit_log SET {assignments} WHERE seq = 10", **dict(zip(columns, row11, strict=True)))
    sql(f"UPDATE audit_log SET {assignments} WHERE seq = 11", **dict(zip(columns, row10, strict=True)))
    result = verify_chain(store.audit_entries())
    assert (result.ok, result.first_bad_seq) == (False, 10)


def test_concurrent_appenders_build_one_linear_chain(store_url: str, catalogue: Catalogue) -> None:
    """8 threads (each with its own store, as replicas) append 25 entries each: one valid chain of 200."""
    stores = [open_store(store_url, catalogue) for _ in range(8)]

    def append(worker: int) -> list[str]:
        return [stores[worker].append_audit(_draft(worker * 100 + i)).decision_id for i in range(25)]

    try:
        with ThreadPoolExecutor(8) as pool:
            written = [d for f in [pool.submit(append, w) for w in range(8)] for d in f.result()]
        listed = list(stores[0].audit_entries())
    finally:
        for s in stores:
            s.close()
    assert [e.seq for e in listed] == list(range(1, 201))
    assert sorted(e.decision_id for e in listed) == sorted(written)
    assert len(set(written)) == 200
    assert verify_chain(listed).ok


def test_filters_select_entries_in_seq_order(store: SqlStore) -> None:
    """Each filter field narrows the listing exactly as a Python filter over all entries does."""
    everything = _append(store, 40)
    filters: list[tuple[AuditFilter, Callable[[AuditEntry], bool]]] = [
        (AuditFilter(principal=everything[4].principal), lambda e: e.principal == everything[4].principal),
        (AuditFilter(agency="metro-police"), lambda e: e.agency == "metro-police"),
        (AuditFilter(agreement_id="ag-2"), lambda e: e.agreement_id == "ag-2"),
        (AuditFilter(outcome="deny"), lambda e: e.outcome == "deny"),
        (AuditFilter(decision_id="dec-0007"), lambda e: e.decision_id == "dec-0007"),
        (
            AuditFilter(since="2026-03-05", until="2026-03-09T10:08:00.000008Z"),
            lambda e: "2026-03-05" <= e.timestamp < "2026-03-09T10:08:00.000008Z",
        ),
        (
            AuditFilter(outcome="allow", agency="health"),
            lambda e: e.outcome == "allow" and e.agency == "health",
        ),
    ]
    for filt, keep in filters:
        expected = [e for e in everything if keep(e)]
        assert expected, filt
        assert list(store.audit_entries(filt)) == expected, filt


def test_limit_and_paging(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """limit caps the listing; listings longer than a page come back whole and in order."""
    import gateway.store._sql as sql_module

    monkeypatch.setattr(sql_module, "AUDIT_PAGE", 7)
    everything = _append(store, 30)
    assert list(store.audit_entries()) == everything
    assert list(store.audit_entries(AuditFilter(limit=10))) == everything[:10]
    assert (
        list(store.audit_entries(AuditFilter(outcome="deny", limit=4)))
        == [e for e in everything if e.outcome == "deny"][:4]
    )
    with pytest.raises(InvalidRequest):
        store.audit_entries(AuditFilter(limit=-1))


@pytest.mark.parametrize(
    "draft",
    [
        _draft(1, input={"bad": float("nan")}),
        _draft(1, input={"token": b"\x01" * 32}),
        _draft(1, result={1: "non-string key"}),
        _draft(1, principal="nul\x00byte"),
        _draft(1, cells_released=-1),
        _draft(1, latency_ms=float("inf")),
    ],
    ids=["nan", "bytes", "int-key", "nul", "negative-count", "infinite-latency"],
)
def test_an_entry_that_cannot_be_stored_faithfully_is_refused(store: SqlStore, draft: AuditDraft) -> None:
    """Values with no canonical form fail closed with AuditWriteError, and nothing is written."""
    store.append_audit(_draft(0))
    with pytest.raises(AuditWriteError, match=f"^{WRITE_ERROR}$"):
        store.append_audit(draft)
    assert [e.seq for e in store.audit_entries()] == [1]


def test_a_closed_store_cannot_write_the_audit_log(store: SqlStore) -> None:
    """After close(), append_audit raises AuditWriteError: no silent reconnect, no release."""
    store.close()
    with pytest.raises(AuditWriteError, match=f"^{WRITE_ERROR}$"):
        store.append_audit(_draft(0))


def test_a_read_only_database_cannot_write_the_audit_log(
    store: SqlStore, store_url: str, catalogue: Catalogue, tmp_path: Path, postgres_base_url: str
) -> None:
    """A database the store may read but not write (SQLite opened read-only, a PostgreSQL session
    in read-only mode) makes append_audit raise AuditWriteError; the log is unchanged."""
    store.append_audit(_draft(0))
    if store.backend == "sqlite":
        # tests run as root, so a read-only directory would not stop SQLite; open read-only instead
        read_only_url = f"sqlite:///file:{tmp_path / 'gateway.db'}?mode=ro&uri=true"
    else:
        schema = str(make_url(store_url).query["options"]).rsplit("search_path=", 1)[1]
        read_only = f"{postgres_base_url}?options=-cdefault_transaction_read_only%3Don"
        read_only_url = postgres_url_for_schema(read_only, schema)
    reader = open_store(read_only_url, catalogue, create=False)
    try:
        assert [e.seq for e in reader.audit_entries()] == [1]  # reading still works
        with pytest.raises(AuditWriteError, match=f"^{WRITE_ERROR}$"):
            reader.append_audit(_draft(1))
    finally:
        reader.close()
    assert [e.seq for e in store.audit_entries()] == [1]


def test_a_missing_audit_table_fails_closed(store: SqlStore, sql: Any) -> None:
    """If the audit table is gone, append_audit raises AuditWriteError rather than carrying on."""
    sql("DROP TABLE audit_log")
    with pytest.raises(AuditWriteError, match=f"^{WRITE_ERROR}$"):
        store.append_audit(_draft(0))


def test_an_unreachable_database_fails_closed(catalogue: Catalogue, tmp_path: Path) -> None:
    """A store whose database cannot be opened raises AuditWriteError on append."""
    missing_dir = tmp_path / "no-such-dir" / "gateway.db"
    store = open_store(f"sqlite:///{missing_dir}", catalogue, create=False)
    try:
        with pytest.raises(AuditWriteError, match=f"^{WRITE_ERROR}$"):
            store.append_audit(_draft(0))
    finally:
        store.close()


@pytest.mark.postgres
def test_an_unreachable_postgres_fails_closed(catalogue: Catalogue) -> None:
    """Nothing listening on the port: AuditWriteError on append, StoreError on ping."""
    from gateway.errors import StoreError

    store = open_store("postgresql+psycopg://postgres@127.0.0.1:1/test", catalogue, create=False)
    try:
        with pytest.raises(AuditWriteError, match=f"^{WRITE_ERROR}$"):
            store.append_audit(_draft(0))
        with pytest.raises(StoreError):
            store.ping()
    finally:
        store.close()
