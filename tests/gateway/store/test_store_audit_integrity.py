"""The audit log's integrity in the database, on SQLite and PostgreSQL: any column of any entry
edited, an entry deleted or moved, a checkpoint forged or the newest entries cut off, each found
by verify, which names the entry; signed checkpoints every N entries; prune with an anchor."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import (
    AuditDraft,
    AuditEntry,
    CheckpointPolicy,
    VerifyResult,
    key_id,
    sign_checkpoint,
    verify_log,
)
from gateway.catalogue import Catalogue
from gateway.errors import Conflict, InvalidRequest
from gateway.store import SqlStore, open_store

KEY = Ed25519PrivateKey.generate()
KEYS = {key_id(KEY.public_key()): KEY.public_key()}
EVERY = 10
N = 40
KEEP_ALL = "9999-01-01T00:00:00Z"  # prune's budget guard: nothing in these tests is that new


def _draft(i: int) -> AuditDraft:
    return AuditDraft(
        decision_id=f"dec-{i:04d}",
        timestamp=f"2025-03-{1 + i % 28:02d}T10:{i % 60:02d}:00.{i:06d}Z",
        path="datashare/query/decision",
        principal=f"spiffe://consortium.example/agency/health/analyst/a{i % 3}",
        agency="health",
        action="query",
        outcome=("allow", "deny")[i % 2],
        reasons=() if i % 2 == 0 else ("dimension 'postcode' not allowed",),
        agreement_id="ag-1",
        purpose="overdose-prevention",
        policy_revision="0123456789abcdef",
        query_fingerprint=f"fp{i}",
        cells_released=i * 3,
        cells_withheld=i % 5,
        latency_ms=0.1 * i + 0.2,
        input={"request": {"dataset": "ed_visits", "group_by": ["district"]}, "n": i},
        result={"allow": i % 2 == 0},
        erased=("/input/request/values",) if i % 4 == 0 else (),
        masked=("/input/principal/name",) if i % 4 == 1 else (),
    )


@pytest.fixture
def signed(store_url: str, catalogue: Catalogue) -> Iterator[SqlStore]:
    """A store that signs a checkpoint every 10 entries, holding 40 entries."""
    store = open_store(store_url, catalogue, checkpoints=CheckpointPolicy(KEY, every=EVERY, seconds=0))
    for i in range(1, N + 1):
        store.append_audit(_draft(i))
    try:
        yield store
    finally:
        store.close()


def _verify(store: SqlStore, **options: Any) -> VerifyResult:
    return verify_log(store.audit_entries(), store.audit_checkpoints(), KEYS, **options)


# An edit of every column of the table: a value of the column's type that differs from any the
# drafts hold. The test below checks this covers every column the audit table has.
COLUMN_EDITS: dict[str, str] = {
    "seq": "seq + 1000",
    "decision_id": "'dec-forged'",
    "timestamp": "'2025-01-01T00:00:00.000000Z'",
    "path": "'datashare/other/decision'",
    "principal": "'spiffe://consortium.example/agency/health/analyst/zz'",
    "agency": "'metro-police'",
    "action": "'ingest'",
    "outcome": "'error'",
    "reasons": r"""'["forged"]'""",
    "agreement_id": "'ag-9'",
    "purpose": "'other'",
    "policy_revision": "'ffffffffffffffff'",
    "query_fingerprint": "'fp-forged'",
    "cells_released": "cells_released + 1",
    "cells_withheld": "cells_withheld + 1",
    "latency_ms": "latency_ms + 0.001",
    "input": r"""'{"forged"\:true}'""",
    "result": r"""'{"forged"\:1}'""",
    "schema_version": "1",
    "erased": r"""'["/input/forged"]'""",
    "masked": r"""'["/input/x"]'""",
    "digests": "'{}'",
    "prev_hash": "'" + "f" * 64 + "'",
    "hash": "'" + "e" * 64 + "'",
}
# the columns whose edit verify can name (a field with a digest of its own)
NAMED = set(COLUMN_EDITS) - {"seq", "prev_hash", "hash", "digests", "schema_version"}


def test_the_column_edits_cover_every_column_of_the_audit_table(signed: SqlStore, store_url: str) -> None:
    """A new column added to audit_log without an edit case here fails this test."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.pool import NullPool

    engine = create_engine(store_url, poolclass=NullPool)
    try:
        columns = {c["name"] for c in inspect(engine).get_columns("audit_log")}
    finally:
        engine.dispose()
    assert columns == set(COLUMN_EDITS)


@pytest.mark.parametrize("seq", [1, 17, N])
@pytest.mark.parametrize("column", sorted(COLUMN_EDITS))
def test_editing_any_column_of_any_entry_is_named(
    signed: SqlStore, sql: Callable[..., list[Any]], column: str, seq: int
) -> None:
    """UPDATE one column of the first, a middle or the newest entry: verify fails and names that
    entry by seq (and decision id, and the column, where the entry still carries them)."""
    assert _verify(signed).ok
    sql(f"UPDATE audit_log SET {column} = {COLUMN_EDITS[column]} WHERE seq = {seq}")
    result = _verify(signed)
    assert not result.ok
    assert result.first_bad_seq == seq, result.problem
    assert f"entry {seq}" in result.problem or f"entries {seq} " in result.problem
    if column not in ("seq", "decision_id"):
        assert result.first_bad_decision_id == f"dec-{seq:04d}"
    if column in NAMED:
        assert result.edited_columns == (column,)


def test_a_deleted_entry_is_named(signed: SqlStore, sql: Callable[..., list[Any]]) -> None:
    """DELETE entry 23: verify names entry 23 as missing."""
    sql("DELETE FROM audit_log WHERE seq = 23")
    result = _verify(signed)
    assert (result.ok, result.first_bad_seq) == (False, 23)
    assert "missing" in result.problem


def test_reordered_entries_are_named(signed: SqlStore, sql: Callable[..., list[Any]]) -> None:
    """Entries 12 and 13 swap places (their seq exchanged): verify names entry 12."""
    sql("UPDATE audit_log SET seq = -1 WHERE seq = 12")
    sql("UPDATE audit_log SET seq = 12 WHERE seq = 13")
    sql("UPDATE audit_log SET seq = 13 WHERE seq = -1")
    result = _verify(signed)
    assert (result.ok, result.first_bad_seq) == (False, 12)


def test_checkpoints_are_signed_every_n_entries(signed: SqlStore) -> None:
    """With checkpoint_every = 10, entries 10, 20, 30 and 40 carry signed checkpoints."""
    checkpoints = signed.audit_checkpoints()
    entries = {e.seq: e.hash for e in signed.audit_entries()}
    assert [c.seq for c in checkpoints] == [10, 20, 30, 40]
    assert all(c.head_hash == entries[c.seq] and c.kind == "periodic" for c in checkpoints)
    assert _verify(signed).checkpoints_checked == 4


@pytest.mark.parametrize("column", ["head_hash", "signature", "timestamp", "seq", "kind"])
def test_a_forged_checkpoint_is_named(signed: SqlStore, sql: Callable[..., list[Any]], column: str) -> None:
    """Any edit of a stored checkpoint makes its signature fail, and verify names its entry."""
    edits = {
        "head_hash": "'" + "a" * 64 + "'",
        "signature": "'" + "QUFB" * 22 + "'",
        "timestamp": "'2020-01-01T00:00:00.000000Z'",
        "seq": "25",
        "kind": "'anchor'",
    }
    sql(f"UPDATE audit_checkpoints SET {column} = {edits[column]} WHERE seq = 20")
    result = _verify(signed)
    assert not result.ok
    assert result.first_bad_seq == (25 if column == "seq" else 20)
    assert "signature does not verify" in result.problem


def test_a_checkpoint_signed_by_another_key_is_refused(signed: SqlStore) -> None:
    """A checkpoint made with a key that is not the gateway's is named as an unknown signer."""
    head = next(e for e in signed.audit_entries() if e.seq == N)
    rogue = sign_checkpoint(Ed25519PrivateKey.generate(), N, head.hash, "2026-01-01T00:00:00Z", "head")
    result = verify_log(signed.audit_entries(), [*signed.audit_checkpoints(), rogue], KEYS)
    assert (result.ok, result.first_bad_seq) == (False, N)
    assert "unknown key" in result.problem


def test_cutting_off_the_newest_entries_is_caught_by_a_checkpoint(
    signed: SqlStore, sql: Callable[..., list[Any]]
) -> None:
    """Deleting entries 36..40 leaves a valid chain 1..35, but the checkpoint at 40 shows the loss."""
    sql("DELETE FROM audit_log WHERE seq > 35")
    result = _verify(signed)
    assert (result.ok, result.first_bad_seq) == (False, 36)
    assert "newest entries were removed" in result.problem


def test_a_rewritten_log_is_caught_by_the_signed_head_hashes(
    signed: SqlStore, sql: Callable[..., list[Any]]
) -> None:
    """A forger with database access who edits entry 5 and recomputes every later hash leaves a
    chain that holds, but entry 10 no longer has the hash its checkpoint signed."""
    from gateway.audit import chain_hash

    entries = list(signed.audit_entries())
    prev = entries[3].hash
    for entry in entries[4:]:
        draft = dataclasses.replace(entry, outcome="allow") if entry.seq == 5 else entry
        new_hash = chain_hash(prev, draft, entry.seq)
        sql(
            "UPDATE audit_log SET outcome = :o, prev_hash = :p, hash = :h WHERE seq = :s",
            o=draft.outcome,
            p=prev,
            h=new_hash,
            s=entry.seq,
        )
        prev = new_hash
    result = _verify(signed)
    assert (result.ok, result.first_bad_seq) == (False, 10)
    assert "checkpoint" in result.problem and result.first_bad_decision_id == "dec-0010"


def test_prune_leaves_a_signed_anchor_that_verify_starts_from(signed: SqlStore) -> None:
    """Pruning entries 1..25 deletes them and signs an anchor at 25; the rest verifies from it,
    and appending carries on at 41 from the kept head."""
    entry_25 = next(e for e in signed.audit_entries() if e.seq == 25)
    anchor = signed.prune_audit(25, entry_25.hash, KEEP_ALL)
    assert (anchor.seq, anchor.head_hash, anchor.kind) == (25, entry_25.hash, "anchor")
    assert next(e.seq for e in signed.audit_entries()) == 26
    result = _verify(signed, from_anchor=True)
    assert result.ok and (result.anchor_seq, result.entries_checked) == (25, 15)
    signed.append_audit(_draft(41))
    assert _verify(signed, from_anchor=True).ok
    assert signed.audit_head()[0] == 41


def test_a_pruned_log_does_not_verify_from_the_genesis(signed: SqlStore) -> None:
    """Without --from-anchor a pruned log reports its first entries missing and says why."""
    entry_5 = next(e for e in signed.audit_entries() if e.seq == 5)
    signed.prune_audit(5, entry_5.hash, KEEP_ALL)
    result = _verify(signed)
    assert (result.ok, result.first_bad_seq) == (False, 1)
    assert "pruned up to entry 5" in result.problem


def test_a_forged_anchor_is_named(signed: SqlStore, sql: Callable[..., list[Any]]) -> None:
    """An anchor moved to hide more entries fails its signature."""
    entry_5 = next(e for e in signed.audit_entries() if e.seq == 5)
    signed.prune_audit(5, entry_5.hash, KEEP_ALL)
    sql("DELETE FROM audit_log WHERE seq <= 8")
    sql("UPDATE audit_checkpoints SET seq = 8 WHERE kind = 'anchor'")
    result = _verify(signed, from_anchor=True)
    assert (result.ok, result.first_bad_seq) == (False, 8)


def test_prune_refuses_the_newest_entry_recent_entries_and_a_changed_log(
    signed: SqlStore, sql: Callable[..., list[Any]]
) -> None:
    """The head is never pruned (the chain continues from it); entries from keep_since on are
    kept (budgets count them); an entry changed since export is not pruned. Nothing is deleted."""
    entries = {e.seq: e for e in signed.audit_entries()}
    with pytest.raises(InvalidRequest, match="newest entry"):
        signed.prune_audit(N, entries[N].hash, KEEP_ALL)
    with pytest.raises(InvalidRequest, match="kept"):
        signed.prune_audit(30, entries[30].hash, "2025-03-01T00:00:00Z")
    with pytest.raises(Conflict):
        signed.prune_audit(30, "0" * 64, KEEP_ALL)
    assert len(list(signed.audit_entries())) == N
    assert [c.kind for c in signed.audit_checkpoints()] == ["periodic"] * 4


def test_an_entry_of_schema_version_1_still_verifies(store_url: str, catalogue: Catalogue) -> None:
    """Entries written before schema version 2 hash without its fields, and still verify."""
    store = open_store(store_url, catalogue)
    try:
        old = store.append_audit(dataclasses.replace(_draft(1), schema_version=1, erased=(), masked=()))
        new = store.append_audit(_draft(2))
        listed: list[AuditEntry] = list(store.audit_entries())
    finally:
        store.close()
    assert (old.schema_version, new.schema_version) == (1, 2)
    assert old.digests == {} and set(new.digests) >= {"outcome", "input"}
    assert verify_log(listed, [], KEYS).ok


_REFUSE_CHECKPOINTS = {
    "sqlite": [
        "CREATE TRIGGER no_cp BEFORE INSERT ON audit_checkpoints BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION no_cp() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER no_cp BEFORE INSERT ON audit_checkpoints FOR EACH ROW EXECUTE FUNCTION no_cp()",
    ],
}


def test_a_checkpoint_that_cannot_be_written_fails_its_entry_closed(
    signed: SqlStore, sql: Callable[..., list[Any]]
) -> None:
    """The checkpoint is written in its entry's transaction: when it cannot be, the entry is not
    written either (AuditWriteError, so nothing is released) and the chain stays whole."""
    from gateway.errors import AuditWriteError

    for statement in _REFUSE_CHECKPOINTS[signed.backend]:
        sql(statement)
    for i in range(N + 1, N + EVERY):  # 41..49: no checkpoint due
        signed.append_audit(_draft(i))
    with pytest.raises(AuditWriteError):
        signed.append_audit(_draft(N + EVERY))  # 50 would carry one
    assert signed.audit_head()[0] == N + EVERY - 1
    assert _verify(signed).ok


def test_the_timed_checkpoint_signs_an_uncovered_head_once(signed: SqlStore) -> None:
    """A head already covered (entry 40) gets nothing; after three more entries, the head (43)
    is signed once, and asking again adds nothing; verify holds with it."""
    assert signed.checkpoint_audit_head() is None
    for i in range(N + 1, N + 4):
        signed.append_audit(_draft(i))
    made = signed.checkpoint_audit_head()
    assert made is not None and made.seq == N + 3
    assert signed.checkpoint_audit_head() is None
    assert [c.seq for c in signed.audit_checkpoints()][-2:] == [40, N + 3]
    assert _verify(signed).ok
