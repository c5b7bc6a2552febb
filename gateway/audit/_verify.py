"""Verifying the log against its signed checkpoints (DESIGN §10): signatures first, then the
chain from the genesis or from a signed anchor, each entry at a checkpoint against the head
hash signed there, and no checkpoint beyond the end. Pure; the gateway's VerifyLog and the
offline ``gateway audit verify --file`` both call ``verify_log``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit._chain import verify_chain
from gateway.audit._checkpoint import Checkpoint, signature_problem
from gateway.audit._types import GENESIS_HASH, AuditEntry, VerifyResult


def verify_log(
    entries: Iterable[AuditEntry],
    checkpoints: Sequence[Checkpoint],
    keys: Mapping[str, Ed25519PublicKey],
    *,
    from_anchor: bool = False,
    segment_from: int = 0,
) -> VerifyResult:
    """The whole log (``segment_from`` 0) or a segment of it starting at entry ``segment_from``
    (an exported file), checked against ``checkpoints`` signed by one of ``keys``.

    ``from_anchor``: start after the newest signed anchor a prune left (its entries are gone).
    A segment is anchored by a signed checkpoint at the entry before it (none needed from 1);
    checkpoints beyond a segment's end are not evidence of loss, beyond the log's end they are.
    """
    ordered = sorted(checkpoints, key=lambda cp: (cp.seq, cp.kind))
    for cp in ordered:
        problem = signature_problem(cp, keys)
        if problem is not None:
            return VerifyResult(False, 0, first_bad_seq=cp.seq, problem=problem)
    counted = len(ordered)
    anchor = (0, GENESIS_HASH)
    if segment_from > 1:
        before = [cp for cp in ordered if cp.seq == segment_from - 1]
        if not before:
            problem = (
                f"the entries start at {segment_from} and no signed checkpoint at entry "
                f"{segment_from - 1} anchors them"
            )
            return VerifyResult(False, 0, first_bad_seq=segment_from, problem=problem)
        anchor = (before[0].seq, before[0].head_hash)
    elif from_anchor:
        anchors = [cp for cp in ordered if cp.kind == "anchor"]
        if anchors:
            anchor = (anchors[-1].seq, anchors[-1].head_hash)
    by_seq: dict[int, list[Checkpoint]] = {}
    for cp in ordered:
        by_seq.setdefault(cp.seq, []).append(cp)

    def against_checkpoints(entry: AuditEntry) -> str | None:
        for cp in by_seq.get(entry.seq, ()):
            if cp.head_hash != entry.hash:
                return (
                    "hash differs from the one signed in the checkpoint at this entry (the log was rewritten)"
                )
        return None

    result = verify_chain(_after(entries, anchor[0]), anchor=anchor, checkpoint=against_checkpoints)
    result = dataclasses.replace(result, checkpoints_checked=counted)
    if not result.ok:
        pruned = [cp.seq for cp in ordered if cp.kind == "anchor"]
        if pruned and not from_anchor and not segment_from and result.first_bad_seq == 1:
            hint = f" (the log was pruned up to entry {pruned[-1]}: verify from the anchor)"
            return dataclasses.replace(result, problem=result.problem + hint)
        return result
    beyond = [cp.seq for cp in ordered if cp.seq > result.head_seq]
    if beyond and not segment_from:
        first = result.head_seq + 1
        problem = (
            f"entries from {first} missing: the log ends at entry {result.head_seq} but a signed "
            f"checkpoint covers entry {beyond[-1]} (the newest entries were removed)"
        )
        return dataclasses.replace(result, ok=False, first_bad_seq=first, problem=problem)
    return result


def _after(entries: Iterable[AuditEntry], anchor_seq: int) -> Iterator[AuditEntry]:
    """Entries after the anchor: a pruned log holds none before it, a full export may."""
    for entry in entries:
        if entry.seq > anchor_seq:
            yield entry
