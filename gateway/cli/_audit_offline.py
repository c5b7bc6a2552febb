"""The audit commands that need no gateway: ``verify --file`` (an exported JSON-lines file
against kept checkpoints and the audit public key) and ``prune`` (export-then-delete on the
gateway host, leaving a signed anchor)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from gateway.audit import (
    AuditEntry,
    AuditFilter,
    Checkpoint,
    CheckpointPolicy,
    VerifyResult,
    checkpoint_from_json,
    entry_from_json,
    entry_json,
    key_id,
    load_public_pem,
    verify_log,
)
from gateway.audit._budget import counted_since, parse_time, stamp
from gateway.cli._client import UsageError
from gateway.errors import Conflict, InvalidRequest

EXIT_BROKEN = 6
EXIT_INVALID = 4


def verify_report_lines(result: VerifyResult, *, as_json: bool) -> Iterator[str]:
    if as_json:
        yield json.dumps(
            {
                "ok": result.ok,
                "entries_checked": result.entries_checked,
                "first_bad_seq": result.first_bad_seq,
                "first_bad_decision_id": result.first_bad_decision_id,
                "edited_columns": list(result.edited_columns),
                "problem": result.problem,
                "head_seq": result.head_seq,
                "head_hash": result.head_hash,
                "anchor_seq": result.anchor_seq,
                "checkpoints_checked": result.checkpoints_checked,
            },
            sort_keys=True,
        )
        return
    if result.ok:
        start = f"from the anchor at entry {result.anchor_seq}" if result.anchor_seq else "from the genesis"
        yield (
            f"audit log verified: {result.entries_checked} entries {start}, chain intact, "
            f"{result.checkpoints_checked} signed checkpoint(s) hold; head entry {result.head_seq}, "
            f"hash {result.head_hash[:16]}…"
        )
        return
    decision = f" (decision {result.first_bad_decision_id})" if result.first_bad_decision_id else ""
    yield f"[bold red]audit log BROKEN[/] at entry {result.first_bad_seq}{decision}: {result.problem}"
    if result.edited_columns:
        yield f"edited: {', '.join(result.edited_columns)}"


def read_checkpoint_files(paths: Sequence[Path]) -> list[Checkpoint]:
    """Checkpoints kept off-site: files written by ``audit checkpoints --json`` (an object with
    ``checkpoints``), ``audit head --json`` (one checkpoint), or a list of checkpoints."""
    kept: list[Checkpoint] = []
    for path in paths:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"--checkpoints {path}: cannot be read ({exc.strerror})") from None
        except ValueError:
            raise UsageError(f"--checkpoints {path}: not JSON") from None
        items = doc.get("checkpoints") if isinstance(doc, dict) and "checkpoints" in doc else doc
        items = [items] if isinstance(items, dict) else items
        if not isinstance(items, list):
            raise UsageError(f"--checkpoints {path}: not a checkpoint file")
        try:
            kept.extend(checkpoint_from_json(item, f"{path}: checkpoint {i}") for i, item in enumerate(items))
        except ValueError as exc:
            raise UsageError(f"--checkpoints {exc}") from None
    return kept


def verify_file(args: argparse.Namespace, console: Console) -> int:
    """Offline: the exported file's chain, anchored at its start by a kept checkpoint (unless it
    starts at entry 1), every kept checkpoint's signature and head hash inside the file."""
    if args.pubkey is None:
        raise UsageError("verify --file: --pubkey FILE (the gateway's audit public key) is needed")
    try:
        public = load_public_pem(args.pubkey.read_bytes())
    except OSError as exc:
        raise UsageError(f"--pubkey {args.pubkey}: cannot be read ({exc.strerror})") from None
    except ValueError as exc:
        raise UsageError(f"--pubkey {args.pubkey}: {exc}") from None
    checkpoints = read_checkpoint_files(args.checkpoints)
    try:
        entries = list(_read_export(args.file))
    except OSError as exc:
        raise UsageError(f"--file {args.file}: cannot be read ({exc.strerror})") from None
    except ValueError as exc:  # a line that is no entry is as bad as an edited one
        sys.stderr.write(f"audit export BROKEN: {exc}\n")
        return EXIT_BROKEN
    first = entries[0].seq if entries else 1
    result = verify_log(entries, checkpoints, {key_id(public): public}, segment_from=max(first, 1))
    for line in verify_report_lines(result, as_json=args.json):
        say(console, line, as_json=args.json)
    return 0 if result.ok else EXIT_BROKEN


def prune(args: argparse.Namespace, console: Console) -> int:
    """Export the entries before ``--before`` to a new file, check the file verifies, then
    delete them in one transaction leaving a signed anchor. No export, no prune."""
    from gateway._settings import GatewaySettings, load_gateway_keys
    from gateway.server._app import checked_bundle
    from gateway.store import open_store

    target: Path = args.export
    if target.exists():
        raise UsageError(f"--export {target}: the file exists; an export is never overwritten")
    settings = GatewaySettings.from_file(args.config)
    keys = load_gateway_keys(settings)
    bundle, catalogue = checked_bundle(settings.policy_bundle)
    policy = CheckpointPolicy(keys.audit_signing, every=0, seconds=0)
    store = open_store(
        settings.store_url, catalogue, indexes=settings.store.indexes, create=False, checkpoints=policy
    )
    try:
        before = _before_seq(store.audit_entries, args.before)
        entries = list(_until(store.audit_entries(), before))
        if not entries:
            console.print(f"nothing to prune before {args.before}")
            return 0
        _write_export(target, entries)
        # the file as written must verify on its own before anything is deleted
        public = keys.audit_signing.public_key()
        check = verify_log(
            list(_read_export(target)),
            store.audit_checkpoints(),
            {key_id(public): public},
            segment_from=entries[0].seq,
        )
        if not check.ok or check.head_seq != entries[-1].seq:
            target.unlink()
            console.print(f"[bold red]not pruned[/]: the export does not verify: {check.problem}")
            return EXIT_BROKEN
        # entries still counted toward an open budget period stay (budgets are counted from the log)
        keep_since = counted_since(bundle.data.get("agreements"), dt.datetime.now(dt.UTC))
        try:
            anchor = store.prune_audit(entries[-1].seq, entries[-1].hash, keep_since)
        except (InvalidRequest, Conflict) as exc:
            target.unlink()
            console.print(f"[bold red]not pruned[/]: {exc.message}", highlight=False)
            return EXIT_INVALID
    finally:
        store.close()
    console.print(
        f"pruned entries {entries[0].seq} to {anchor.seq} ({len(entries)}) into {target}; "
        f"signed anchor at entry {anchor.seq} (key {anchor.key_id})",
        highlight=False,
    )
    return 0


def _before_seq(listing: Any, before: str) -> int:
    """``--before`` as a seq: a number is one; a time is the first entry at or after it."""
    if re.fullmatch(r"[0-9]+", before):
        return int(before)
    try:
        moment = stamp(parse_time(before))
    except ValueError:
        raise UsageError("--before: a seq number or an RFC 3339 time (2026-01-01T00:00:00Z)") from None
    first_after = next(iter(listing(AuditFilter(since=moment, limit=1))), None)
    return first_after.seq if first_after is not None else 2**63 - 1


def _until(entries: Iterable[AuditEntry], before: int) -> Iterator[AuditEntry]:
    for entry in entries:
        if entry.seq >= before:
            return
        yield entry


def _write_export(target: Path, entries: Sequence[AuditEntry]) -> None:
    """Write, flush and fsync a new file (O_EXCL: never over another), then its directory."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        for entry in entries:
            handle.write(entry_json(entry) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _read_export(path: Path) -> Iterator[AuditEntry]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield entry_from_json(line, f"line {number}")


def say(console: Console, line: str, *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(line + "\n")
    else:
        console.print(line, highlight=False, soft_wrap=True)
