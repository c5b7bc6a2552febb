"""The audit log's signed checkpoints and prune anchors in the database (gateway.audit._checkpoint).

Called by ``SqlStore`` inside its audit transactions, under the chain lock: a checkpoint is
written in the same transaction as the entry it signs, and a prune deletes and anchors at once.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, Table, delete, func, select

from gateway.audit._budget import parse_time, stamp
from gateway.audit._checkpoint import Checkpoint, CheckpointKind, CheckpointPolicy, sign_checkpoint
from gateway.errors import Conflict, InvalidRequest


def read_checkpoints(conn: Connection, table: Table) -> list[Checkpoint]:
    rows = conn.execute(select(table).order_by(table.c.seq, table.c.kind)).mappings().all()
    return [
        Checkpoint(
            seq=int(r["seq"]),
            head_hash=str(r["head_hash"]),
            timestamp=str(r["timestamp"]),
            key_id=str(r["key_id"]),
            kind=r["kind"],
            signature=str(r["signature"]),
        )
        for r in rows
    ]


def write_checkpoint(conn: Connection, table: Table, checkpoint: Checkpoint) -> None:
    conn.execute(table.insert(), checkpoint.as_json())


def checkpoint_if_due(
    conn: Connection, table: Table, policy: CheckpointPolicy, seq: int, head_hash: str
) -> None:
    """Sign entry ``seq`` when the policy says one is due since the newest checkpoint."""
    last = conn.execute(select(table.c.seq, table.c.timestamp).order_by(table.c.seq.desc()).limit(1)).first()
    now = dt.datetime.now(dt.UTC)
    last_seq, since = 0, None
    if last is not None:
        last_seq = int(last.seq)
        since = (now - parse_time(str(last.timestamp))).total_seconds()
    if policy.due(seq, last_seq, since):
        write_checkpoint(conn, table, _signed(policy, seq, head_hash, now, "periodic"))


def checkpoint_head(
    conn: Connection, log: Table, table: Table, policy: CheckpointPolicy
) -> Checkpoint | None:
    """Sign the newest entry unless a checkpoint already covers it (the timer's checkpoint: an
    idle log still gets its last entries signed within ``checkpoint_seconds``)."""
    head = conn.execute(select(log.c.seq, log.c.hash).order_by(log.c.seq.desc()).limit(1)).first()
    if head is None:
        return None
    last = conn.execute(select(func.max(table.c.seq))).scalar()
    if last is not None and int(last) >= int(head.seq):
        return None
    checkpoint = _signed(policy, int(head.seq), str(head.hash), dt.datetime.now(dt.UTC), "periodic")
    write_checkpoint(conn, table, checkpoint)
    return checkpoint


def prune(
    conn: Connection,
    log: Table,
    checkpoints: Table,
    policy: CheckpointPolicy,
    *,
    through: int,
    expected_hash: str,
    keep_since: str,
) -> Checkpoint:
    """Delete entries 1..``through`` and leave a signed anchor at ``through``.

    Refused (InvalidRequest, nothing deleted) if that would remove the newest entry (the chain
    continues from it) or an entry from ``keep_since`` on (query budgets are counted from the
    log); Conflict if entry ``through`` no longer has the hash that was exported."""
    head = conn.execute(select(func.max(log.c.seq))).scalar()
    if head is None or through >= int(head):
        raise InvalidRequest("before", "the newest entry is never pruned: the chain continues from it")
    row = conn.execute(select(log.c.hash).where(log.c.seq == through)).first()
    if row is None or row.hash != expected_hash:
        raise Conflict("audit log: the entries changed since they were exported; nothing was pruned")
    newest = conn.execute(select(func.max(log.c.timestamp)).where(log.c.seq <= through)).scalar()
    if newest is not None and str(newest) >= keep_since:
        raise InvalidRequest(
            "before", f"entries from {keep_since} on are kept (query budgets are counted from them)"
        )
    conn.execute(delete(log).where(log.c.seq <= through))
    anchor = _signed(policy, through, expected_hash, dt.datetime.now(dt.UTC), "anchor")
    conn.execute(delete(checkpoints).where(checkpoints.c.seq == through, checkpoints.c.kind == "anchor"))
    write_checkpoint(conn, checkpoints, anchor)
    return anchor


def _signed(
    policy: CheckpointPolicy, seq: int, head_hash: str, at: dt.datetime, kind: CheckpointKind
) -> Checkpoint:
    return sign_checkpoint(policy.key, seq, head_hash, stamp(at), kind)
