"""Signed checkpoints and verify_log as pure functions: signatures, anchors, segments, truncation."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import (
    GENESIS_HASH,
    AuditDraft,
    AuditEntry,
    Checkpoint,
    CheckpointPolicy,
    chain_hash,
    checkpoint_from_json,
    key_id,
    sign_checkpoint,
    verify_log,
)
from gateway.audit._checkpoint import signature_problem

KEY = Ed25519PrivateKey.generate()
KEYS = {key_id(KEY.public_key()): KEY.public_key()}


def _chain(n: int) -> list[AuditEntry]:
    entries, prev = [], GENESIS_HASH
    for seq in range(1, n + 1):
        draft = AuditDraft(f"d{seq}", "2026-01-01T00:00:00Z", "p", "spiffe://x", "health", "query", "allow")
        h = chain_hash(prev, draft, seq)
        entries.append(
            AuditEntry(
                **{f.name: getattr(draft, f.name) for f in dataclasses.fields(draft)},
                seq=seq,
                prev_hash=prev,
                hash=h,
            )
        )
        prev = h
    return entries


def _cp(entries: list[AuditEntry], seq: int) -> Checkpoint:
    return sign_checkpoint(KEY, seq, entries[seq - 1].hash, "2026-01-01T00:00:00Z", "periodic")


def test_a_checkpoint_verifies_and_survives_a_json_round_trip() -> None:
    """A signed checkpoint checks under the key; read back from its JSON form it still does."""
    cp = sign_checkpoint(KEY, 7, "a" * 64, "2026-01-01T00:00:00Z", "periodic")
    assert signature_problem(cp, KEYS) is None
    assert signature_problem(checkpoint_from_json(cp.as_json(), "cp"), KEYS) is None


@pytest.mark.parametrize("field", ["seq", "head_hash", "timestamp", "kind"])
def test_any_changed_field_breaks_the_signature(field: str) -> None:
    """The signature covers seq, head hash, time and kind."""
    cp = sign_checkpoint(KEY, 7, "a" * 64, "2026-01-01T00:00:00Z", "periodic")
    changed = {"seq": 8, "head_hash": "b" * 64, "timestamp": "2026-01-02T00:00:00Z", "kind": "anchor"}[field]
    assert "does not verify" in (signature_problem(dataclasses.replace(cp, **{field: changed}), KEYS) or "")


def test_the_due_rule_counts_entries_and_seconds() -> None:
    """Every N entries since the last checkpoint, or the first entry T seconds after it."""
    policy = CheckpointPolicy(KEY, every=10, seconds=60)
    assert policy.due(10, 0, 1.0) and not policy.due(9, 0, 1.0)
    assert policy.due(12, 10, 61.0) and not policy.due(12, 10, 59.0)
    assert policy.due(1, 0, None)  # no checkpoint yet and a time trigger: sign the first entry
    assert not CheckpointPolicy(KEY, every=0, seconds=0).due(10**6, 0, None)


def test_a_segment_is_anchored_by_the_checkpoint_before_it() -> None:
    """Entries 6..10 verify when a signed checkpoint at 5 anchors them, and fail without one."""
    entries = _chain(10)
    anchored = verify_log(entries[5:], [_cp(entries, 5)], KEYS, segment_from=6)
    assert anchored.ok and anchored.anchor_seq == 5
    loose = verify_log(entries[5:], [], KEYS, segment_from=6)
    assert (loose.ok, loose.first_bad_seq) == (False, 6)


def test_checkpoints_beyond_a_segment_are_not_loss_but_beyond_the_log_are() -> None:
    """A checkpoint at 10 over entries 1..8: fine for an exported segment, a loss for the log."""
    entries = _chain(10)
    cps = [_cp(entries, 10)]
    assert verify_log(entries[:8], cps, KEYS, segment_from=1).ok
    whole = verify_log(entries[:8], cps, KEYS)
    assert (whole.ok, whole.first_bad_seq) == (False, 9)
