"""The audit log's hash chain (DESIGN §10): canonical encoding, chaining, verification.

Pure functions; the store calls them under its chain lock. Entry n's hash is
``SHA-256(prev_hash || canonical_bytes(entry n without its hash))`` with ``prev_hash`` the hash
of entry n-1 (``GENESIS_HASH`` before entry 1). ``seq`` and ``prev_hash`` are inside the
canonical bytes too, so an entry cannot be renumbered or relinked without its hash changing.

The canonical encoding must come out byte-identical after a round trip through SQLite or
PostgreSQL: JSON with sorted keys, no whitespace, UTF-8 (not ASCII-escaped), tuples as lists,
floats as Python's shortest round-trip repr. The store rounds ``latency_ms`` to three decimals
before chaining, so its repr has at most 15 significant digits and reads back identically from
a double precision column even where a server prints floats with 15 digits only
(``extra_float_digits = 0``); yet any edit of the stored number changes its repr and the hash.
``input`` and ``result`` are stored as canonical JSON text; a stored field that does not read
back in canonical form is loaded as ``NonCanonical`` and can never hash like the original.

Signed checkpoints (a later issue) plug in through ``verify_chain``'s ``anchor`` (verify a tail
of the log from a checkpointed entry) and ``checkpoint`` (a hook that checks each entry against
the signed checkpoints and says what is wrong, if anything).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from gateway.audit._types import GENESIS_HASH, AuditDraft, AuditEntry, VerifyResult

CheckpointCheck = Callable[[AuditEntry], "str | None"]
"""Given a chained entry, the problem with it in words (e.g. "signature does not verify"), or None."""

_DRAFT_FIELDS = tuple(f.name for f in fields(AuditDraft))


@dataclass(frozen=True)
class NonCanonical:
    """A stored field that did not read back in the form the log writes: evidence of an edit.

    It has no canonical encoding, so ``verify_chain`` names the entry that holds it."""

    field: str


def entry_fields(draft: AuditDraft, seq: int, prev_hash: str) -> dict[str, Any]:
    """Every field an entry's hash covers: the draft's fields plus ``seq`` and ``prev_hash``."""
    values = {name: getattr(draft, name) for name in _DRAFT_FIELDS}
    values["seq"] = seq
    values["prev_hash"] = prev_hash
    return values


def canonical_bytes(entry_fields: Mapping[str, Any]) -> bytes:
    """Canonical JSON of every field except ``hash``; ValueError if a value has no JSON form."""
    doc = {
        # an int latency would encode as "0", the float column reads back as "0.0"
        name: _plain(float(value), name) if name == "latency_ms" else _plain(value, name)
        for name, value in entry_fields.items()
        if name != "hash"
    }
    return _dumps(doc).encode()


def canonical_json(value: Any, where: str) -> str:
    """A JSON value as the store keeps it (``reasons``, ``input``, ``result``), in canonical form."""
    return _dumps(_plain(value, where))


def chain_hash(prev_hash: str, draft: AuditDraft, seq: int) -> str:
    """The hash of ``draft`` as entry ``seq`` following an entry whose hash is ``prev_hash``."""
    body = canonical_bytes(entry_fields(draft, seq, prev_hash))
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


def verify_chain(
    entries: Iterable[AuditEntry],
    *,
    anchor: tuple[int, str] = (0, GENESIS_HASH),
    checkpoint: CheckpointCheck | None = None,
) -> VerifyResult:
    """Recompute the chain in the order given and name the first entry that does not hold.

    ``entries`` must come in seq order (as the store lists them). ``anchor`` is the (seq, hash)
    of the entry just before the first one: the genesis by default, a verified checkpoint when
    checking only a tail of the log. The deletion of the newest entries cannot be seen from the
    chain alone; signed checkpoints are what catch that.
    """
    prev_seq, prev_hash = anchor
    checked = 0
    for entry in entries:
        checked += 1
        problem, bad_seq = _problem(entry, prev_seq, prev_hash, anchor)
        if problem is None and checkpoint is not None:
            found = checkpoint(entry)
            problem, bad_seq = (f"entry {entry.seq}: {found}", entry.seq) if found else (None, 0)
        if problem is not None:
            return VerifyResult(False, checked, first_bad_seq=bad_seq, problem=problem, head_hash=prev_hash)
        prev_seq, prev_hash = entry.seq, entry.hash
    return VerifyResult(True, checked, head_hash=prev_hash)


def _problem(
    entry: AuditEntry, prev_seq: int, prev_hash: str, anchor: tuple[int, str]
) -> tuple[str | None, int]:
    expected = prev_seq + 1
    if entry.seq > expected:
        gap = f"entry {expected}" if entry.seq == expected + 1 else f"entries {expected} to {entry.seq - 1}"
        jump = (
            f"the log starts at entry {entry.seq}"
            if prev_seq == 0
            else f"sequence jumps from {prev_seq} to {entry.seq}"
        )
        return f"{gap} missing ({jump})", expected
    if entry.seq < expected:
        return f"entry {entry.seq}: out of order (it follows entry {prev_seq})", entry.seq
    if entry.prev_hash != prev_hash:
        if prev_seq == 0:
            return f"entry {entry.seq}: prev_hash is not the genesis hash", entry.seq
        what = f"entry {prev_seq}" if prev_seq != anchor[0] else f"the anchor (entry {prev_seq})"
        return f"entry {entry.seq}: prev_hash does not match {what}", entry.seq
    try:
        recomputed = chain_hash(entry.prev_hash, entry, entry.seq)
    except (ValueError, TypeError):
        recomputed = ""  # a field with no canonical form (NonCanonical, NaN, ...) was edited in
    if recomputed != entry.hash:
        return f"entry {entry.seq}: hash does not match its contents", entry.seq
    return None, 0


def _dumps(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _plain(value: Any, where: str) -> Any:
    """JSON-ready copy: mappings with string keys, tuples as lists; nothing JSON cannot say."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: numbers must be finite")
        return value
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise ValueError(f"{where}: object keys must be strings")
        return {k: _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, where) for v in value]
    raise ValueError(f"{where}: {type(value).__name__} has no canonical JSON form")
