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

Versions (``schema_version``): an entry hashes exactly the fields of its version, so entries
written before a field existed still verify. Version 2 adds the mask's ``erased``/``masked``
pointers and ``digests``: a short SHA-256 of each field's canonical value, covered by the hash
like any field. They add no protection (the hash already covers every field); they let verify
say WHICH column of an edited entry changed, where the hash alone says only "something did".

Signed checkpoints plug in through ``verify_chain``'s ``anchor`` (verify a tail of the log from
a checkpointed entry) and ``checkpoint`` (a hook that checks each entry against the signed
checkpoints and says what is wrong, if anything); gateway.audit._verify drives both.
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
_V2_FIELDS = ("schema_version", "erased", "masked", "digests")
# the fields a digest is kept for: every field of the draft but the digests themselves
DIGESTED_FIELDS = tuple(name for name in _DRAFT_FIELDS if name != "digests")
_DIGEST_HEX = 16  # 64 bits: enough to tell an edit, short enough to store per field
_UNREADABLE = "-"


@dataclass(frozen=True)
class NonCanonical:
    """A stored field that did not read back in the form the log writes: evidence of an edit.

    It has no canonical encoding, so ``verify_chain`` names the entry that holds it."""

    field: str


def entry_fields(draft: AuditDraft, seq: int, prev_hash: str) -> dict[str, Any]:
    """Every field an entry's hash covers: the draft's fields plus ``seq`` and ``prev_hash``."""
    names = _DRAFT_FIELDS if draft.schema_version != 1 else [n for n in _DRAFT_FIELDS if n not in _V2_FIELDS]
    values = {name: getattr(draft, name) for name in names}
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


def field_digests(draft: AuditDraft) -> dict[str, str]:
    """Each field's short digest (``digests``); a field with no canonical form gets a mark that
    matches no digest, so it is named as edited rather than failing the listing."""
    digests: dict[str, str] = {}
    for name in DIGESTED_FIELDS:
        value = getattr(draft, name)
        try:
            body = canonical_json(float(value) if name == "latency_ms" else value, name)
        except (TypeError, ValueError):
            digests[name] = _UNREADABLE
            continue
        digests[name] = hashlib.sha256(f"{name}={body}".encode()).hexdigest()[:_DIGEST_HEX]
    return digests


def edited_columns(entry: AuditDraft) -> tuple[str, ...]:
    """For an entry whose hash does not match: the columns whose stored digest differs from
    their contents, or ``digests``/``hash`` themselves when every field still matches."""
    if entry.schema_version == 1 or not isinstance(entry.digests, Mapping) or not entry.digests:
        return ()
    now = field_digests(entry)
    named = tuple(name for name in DIGESTED_FIELDS if entry.digests.get(name) != now[name])
    return named or ("digests or hash",)


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
            named = bad_seq == entry.seq
            return VerifyResult(
                False,
                checked,
                first_bad_seq=bad_seq,
                problem=problem,
                head_hash=prev_hash,
                first_bad_decision_id=str(entry.decision_id) if named else "",
                head_seq=prev_seq,
                anchor_seq=anchor[0],
                edited_columns=edited_columns(entry) if named and "hash does not match" in problem else (),
            )
        prev_seq, prev_hash = entry.seq, entry.hash
    return VerifyResult(True, checked, head_hash=prev_hash, head_seq=prev_seq, anchor_seq=anchor[0])


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
