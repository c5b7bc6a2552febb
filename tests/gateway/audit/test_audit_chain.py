"""The audit hash chain as pure functions: canonical encoding, chaining and verification."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit import GENESIS_HASH, AuditDraft, AuditEntry, canonical_bytes, chain_hash, verify_chain
from gateway.audit._chain import NonCanonical, entry_fields


def _draft(i: int, **changes: Any) -> AuditDraft:
    draft = AuditDraft(
        decision_id=f"dec-{i}",
        timestamp=f"2026-03-01T10:00:{i % 60:02d}.000000Z",
        path="datashare/query/decision",
        principal="spiffe://consortium.example/agency/health/analyst/ana",
        agency="health",
        action="query",
        outcome="allow" if i % 2 else "deny",
        reasons=(f"reason {i}",),
        agreement_id="ag-2026-001",
        purpose="overdose-prevention",
        policy_revision="abc123",
        query_fingerprint=f"fp-{i}",
        cells_released=i,
        cells_withheld=1,
        latency_ms=1.25,
        input={"request": {"dataset": "ed_visits"}, "i": i},
        result={"allow": bool(i % 2)},
    )
    return dataclasses.replace(draft, **changes)


def _chain(drafts: list[AuditDraft]) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    prev = GENESIS_HASH
    for seq, draft in enumerate(drafts, start=1):
        entry_hash = chain_hash(prev, draft, seq)
        fields = {f.name: getattr(draft, f.name) for f in dataclasses.fields(AuditDraft)}
        entries.append(AuditEntry(**fields, seq=seq, prev_hash=prev, hash=entry_hash))
        prev = entry_hash
    return entries


def test_canonical_bytes_are_sorted_compact_utf8_json_without_the_hash() -> None:
    """Keys sorted, no whitespace, non-ASCII kept as UTF-8, tuples as lists, ``hash`` left out."""
    encoded = canonical_bytes({"b": ("x", 1), "a": "Zoë", "hash": "ignored", "latency_ms": 2})
    assert encoded == '{"a":"Zoë","b":["x",1],"latency_ms":2.0}'.encode()


def test_canonical_bytes_do_not_depend_on_insertion_order() -> None:
    """The same fields given in another order encode to the same bytes."""
    fields = entry_fields(_draft(3), 3, GENESIS_HASH)
    reordered = dict(reversed(list(fields.items())))
    assert canonical_bytes(fields) == canonical_bytes(reordered)


def test_chain_hash_is_sha256_of_prev_hash_and_canonical_bytes() -> None:
    """The hash is SHA-256 over prev_hash followed by the canonical bytes, seq included."""
    draft = _draft(5)
    prev = "ab" * 32
    body = canonical_bytes(entry_fields(draft, 9, prev))
    assert json.loads(body)["seq"] == 9
    assert chain_hash(prev, draft, 9) == hashlib.sha256(prev.encode() + body).hexdigest()


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(AuditDraft)])
def test_every_field_is_covered_by_the_hash(field: str) -> None:
    """Changing any one field of a draft changes its hash."""
    draft = _draft(2)
    value = getattr(draft, field)
    changed: Any
    if isinstance(value, str):
        changed = value + "x"
    elif isinstance(value, bool):
        changed = not value
    elif isinstance(value, int | float):
        changed = value + 1
    elif isinstance(value, tuple):
        changed = (*value, "extra")
    else:
        changed = {**value, "extra": 1}
    assert chain_hash(GENESIS_HASH, draft, 1) != chain_hash(
        GENESIS_HASH, dataclasses.replace(draft, **{field: changed}), 1
    )


def test_seq_and_prev_hash_are_covered_by_the_hash() -> None:
    """The same draft at another position, or after another entry, hashes differently."""
    draft = _draft(1)
    assert chain_hash(GENESIS_HASH, draft, 1) != chain_hash(GENESIS_HASH, draft, 2)
    assert chain_hash(GENESIS_HASH, draft, 1) != chain_hash("1" * 64, draft, 1)


def test_a_latency_that_is_an_int_hashes_like_the_float_it_reads_back_as() -> None:
    """latency_ms=2 and 2.0 encode alike, because a float column hands back 2.0."""
    assert chain_hash(GENESIS_HASH, _draft(1, latency_ms=2), 1) == chain_hash(
        GENESIS_HASH, _draft(1, latency_ms=2.0), 1
    )


@pytest.mark.parametrize(
    "bad",
    [{"x": float("nan")}, {"x": float("inf")}, {"x": b"bytes"}, {1: "int key"}, {"x": {1, 2}}],
    ids=["nan", "inf", "bytes", "int-key", "set"],
)
def test_values_without_a_canonical_form_are_refused(bad: dict[Any, Any]) -> None:
    """NaN, infinities, bytes, non-string keys and sets raise ValueError instead of hashing loosely."""
    with pytest.raises(ValueError, match="input"):
        chain_hash(GENESIS_HASH, _draft(1, input=bad), 1)


def test_an_intact_chain_verifies() -> None:
    """A chain built with chain_hash verifies, reports its length and its head hash."""
    entries = _chain([_draft(i) for i in range(20)])
    result = verify_chain(entries)
    assert (result.ok, result.entries_checked, result.first_bad_seq, result.head_hash) == (
        True,
        20,
        0,
        entries[-1].hash,
    )


def test_an_empty_chain_verifies_with_the_genesis_head() -> None:
    """No entries: ok, nothing checked, head is the genesis hash."""
    assert verify_chain([]) == verify_chain(iter(()))
    assert (verify_chain([]).ok, verify_chain([]).head_hash) == (True, GENESIS_HASH)


def test_an_edited_entry_is_named() -> None:
    """An entry whose contents changed after hashing is named with the words the auditor reads."""
    entries = _chain([_draft(i) for i in range(20)])
    entries[16] = dataclasses.replace(entries[16], cells_released=999)
    result = verify_chain(entries)
    assert (result.ok, result.first_bad_seq) == (False, 17)
    assert result.problem == "entry 17: hash does not match its contents"
    assert result.head_hash == entries[15].hash  # the last entry that was still good


def test_a_relinked_entry_is_named() -> None:
    """An entry whose prev_hash is not its predecessor's hash is named."""
    entries = _chain([_draft(i) for i in range(20)])
    entries[17] = dataclasses.replace(entries[17], prev_hash="0" * 64)
    result = verify_chain(entries)
    assert (result.first_bad_seq, result.problem) == (18, "entry 18: prev_hash does not match entry 17")


def test_a_deleted_entry_is_named() -> None:
    """A missing entry is reported with the jump in the sequence."""
    entries = _chain([_draft(i) for i in range(25)])
    del entries[19]
    result = verify_chain(entries)
    assert (result.first_bad_seq, result.problem) == (20, "entry 20 missing (sequence jumps from 19 to 21)")


def test_several_deleted_entries_and_a_deleted_first_entry_are_named() -> None:
    """A run of gaps names its range; a log that does not start at 1 says where it starts."""
    entries = _chain([_draft(i) for i in range(25)])
    assert (
        verify_chain(entries[:9] + entries[12:]).problem
        == "entries 10 to 12 missing (sequence jumps from 9 to 13)"
    )
    assert verify_chain(entries[1:]).problem == "entry 1 missing (the log starts at entry 2)"


def test_reordered_entries_are_named() -> None:
    """Two entries listed in swapped order: the first out-of-place position is named."""
    entries = _chain([_draft(i) for i in range(10)])
    entries[4], entries[5] = entries[5], entries[4]
    result = verify_chain(entries)
    assert (result.ok, result.first_bad_seq) == (False, 5)
    assert result.problem == "entry 5 missing (sequence jumps from 4 to 6)"


def test_swapped_contents_are_named() -> None:
    """Contents of entries 4 and 5 exchanged while their seq stays: caught at 4."""
    entries = _chain([_draft(i) for i in range(10)])
    four, five = entries[3], entries[4]
    entries[3] = dataclasses.replace(five, seq=4)
    entries[4] = dataclasses.replace(four, seq=5)
    result = verify_chain(entries)
    assert (result.first_bad_seq, result.problem) == (4, "entry 4: prev_hash does not match entry 3")


def test_a_repeated_entry_is_named() -> None:
    """An entry listed twice (seq going backwards) is named as out of order."""
    entries = _chain([_draft(i) for i in range(6)])
    result = verify_chain([*entries[:4], entries[2], *entries[4:]])
    assert (result.first_bad_seq, result.problem) == (3, "entry 3: out of order (it follows entry 4)")


def test_the_first_entry_must_follow_the_genesis_hash() -> None:
    """Entry 1 with another prev_hash is named as not following the genesis."""
    entries = _chain([_draft(i) for i in range(3)])
    entries[0] = dataclasses.replace(entries[0], prev_hash="1" * 64)
    assert verify_chain(entries).problem == "entry 1: prev_hash is not the genesis hash"


def test_a_field_that_did_not_read_back_canonically_is_named() -> None:
    """A NonCanonical field (stored JSON edited out of form) fails verification at its entry."""
    entries = _chain([_draft(i) for i in range(5)])
    entries[2] = dataclasses.replace(entries[2], input=NonCanonical("input"))  # type: ignore[arg-type]
    result = verify_chain(entries)
    assert (result.first_bad_seq, result.problem) == (3, "entry 3: hash does not match its contents")


def test_a_tail_verifies_from_an_anchor() -> None:
    """Seam for signed checkpoints: entries 11..20 verify from the (seq, hash) of entry 10."""
    entries = _chain([_draft(i) for i in range(20)])
    assert verify_chain(entries[10:], anchor=(10, entries[9].hash)).ok
    wrong = verify_chain(entries[10:], anchor=(10, "f" * 64))
    assert (wrong.first_bad_seq, wrong.problem) == (
        11,
        "entry 11: prev_hash does not match the anchor (entry 10)",
    )


def test_a_checkpoint_check_can_fail_an_entry() -> None:
    """Seam for signed checkpoints: the hook's complaint about an entry is reported as its problem."""
    entries = _chain([_draft(i) for i in range(8)])
    result = verify_chain(
        entries, checkpoint=lambda e: "checkpoint signature does not verify" if e.seq == 6 else None
    )
    assert (result.first_bad_seq, result.problem) == (6, "entry 6: checkpoint signature does not verify")


_json_leaf = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=60, deadline=None, database=None)  # no .hypothesis dir in the repo
@given(
    doc=st.dictionaries(st.text(max_size=8), _json, max_size=4),
    reasons=st.lists(st.text(max_size=10), max_size=3),
    latency=st.floats(min_value=0, max_value=1e6),
)
def test_any_entry_survives_a_json_round_trip_and_detects_edits(
    doc: dict[str, Any], reasons: list[str], latency: float
) -> None:
    """Drafts with arbitrary JSON content verify after a JSON round trip, and a changed cell count fails."""
    draft = _draft(1, input=doc, result={"echo": doc}, reasons=tuple(reasons), latency_ms=round(latency, 3))
    (entry,) = _chain([draft])
    reread = dataclasses.replace(
        entry, input=json.loads(json.dumps(doc)), reasons=tuple(json.loads(json.dumps(reasons)))
    )
    assert verify_chain([reread]).ok
    assert not verify_chain([dataclasses.replace(reread, cells_withheld=entry.cells_withheld + 1)]).ok
