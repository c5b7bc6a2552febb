"""``gateway audit list|verify|export|head|checkpoints|pubkey|prune``: the auditor's commands.

Over gRPC with a client profile, except ``verify --file`` (an exported file, checked offline
against kept checkpoints and the public key: no gateway needed) and ``prune`` (the operator's,
on the gateway host, with its settings and audit key); those two are in ``_audit_offline``.
``report`` is in ``_audit_report``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gateway._pb import audit_pb2, audit_pb2_grpc
from gateway._settings import ClientProfile
from gateway._tls import client_channel
from gateway.audit import VerifyResult, csv_text, entry_from_json
from gateway.cli._audit_offline import prune, read_checkpoint_files, say, verify_file, verify_report_lines
from gateway.cli._audit_report import add_report_arguments, run_report
from gateway.cli._client import UsageError

TIMEOUT_S = 120.0
EXIT_BROKEN = 6

ACTIONS = (
    ("list", "List decisions, filtered."),
    ("verify", "Recompute the hash chain and the checkpoint signatures (over gRPC, or offline with --file)."),
    ("export", "Write decisions as JSON lines (or CSV) to stdout."),
    ("head", "The newest entry's seq and hash, signed now by the gateway: keep it off-site."),
    ("checkpoints", "Every signed checkpoint and prune anchor, with the public key: keep them off-site."),
    ("pubkey", "The gateway's audit public key (PEM), to verify checkpoints offline."),
    ("report", "Sum up the log: decisions, denials and reasons, suppression, budgets, latency."),
    (
        "prune",
        "Export entries before a point to a file, then delete them leaving a signed anchor (operator).",
    ),
)
REPORT_EXAMPLES = (
    "examples:\n  gateway audit report --client ./pki/clients/auditor.toml\n"
    "  gateway audit report --client ./pki/clients/auditor.toml --agreement ag-2026-001 \\\n"
    "      --since 2026-11-01T00:00:00Z --until 2026-12-01T00:00:00Z --html november.html\n"
    "  gateway audit report --client ./pki/clients/auditor.toml --json | jq .denials\n\n"
    "Computed from the decisions your audit scope lets you list. The HTML page is one\n"
    "self-contained file (inline SVG charts, no script, nothing fetched)."
)
OFFLINE = ("verify", "prune")  # --client is optional for verify (--file) and unused by prune


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    """The options of ``gateway audit NAME`` (besides --client)."""
    if name in ("list", "export"):
        add_list_arguments(p)
    if name == "report":
        p.epilog = REPORT_EXAMPLES
        add_report_arguments(p)
    if name == "export":
        p.add_argument("--format", choices=["jsonl", "csv"], default="jsonl", help="jsonl (default) or csv")
    if name in ("verify", "head", "checkpoints"):
        p.add_argument("--json", action="store_true", help="print JSON instead of words")
    if name == "verify":
        p.add_argument("--from-anchor", action="store_true", help="start after the newest prune anchor")
        p.add_argument(
            "--checkpoints",
            type=Path,
            action="append",
            default=[],
            metavar="FILE",
            help="checkpoints kept off-site ('audit checkpoints --json', 'audit head --json'); repeatable",
        )
        p.add_argument("--file", type=Path, help="verify this exported JSON-lines file offline instead")
        p.add_argument("--pubkey", type=Path, help="with --file: the gateway's audit public key (PEM)")
    if name == "prune":
        p.add_argument("--config", type=Path, required=True, help="the gateway's settings (gateway.toml)")
        p.add_argument(
            "--before", required=True, help="prune entries before this seq, or before this RFC 3339 time"
        )
        p.add_argument(
            "--export",
            type=Path,
            required=True,
            metavar="FILE",
            help="new file for the pruned entries (JSON lines)",
        )


def add_list_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--since", default="", help="first timestamp, inclusive, RFC 3339, e.g. 2026-11-01T00:00:00Z"
    )
    p.add_argument("--until", default="", help="last timestamp, exclusive, RFC 3339")
    p.add_argument(
        "--principal",
        default="",
        help="SPIFFE id, e.g. spiffe://datashare.local/agency/health/analyst/health-analyst",
    )
    p.add_argument("--agency", default="", help="agency id, e.g. health")
    p.add_argument("--agreement", default="", help="agreement id, e.g. ag-2026-001")
    p.add_argument(
        "--outcome", default="", choices=["", "allow", "deny", "error"], help="allow, deny or error"
    )
    p.add_argument("--decision", default="", help="one decision id")
    p.add_argument("--limit", type=int, default=0, help="at most this many entries (default: all)")
    if "--json" not in p._option_string_actions:  # export has --format instead
        p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")


def run(args: argparse.Namespace, console: Console) -> int:
    command = args.audit_command
    if command == "report":
        return run_report(args, console)
    if command == "prune":
        return prune(args, console)
    if command == "verify" and args.file is not None:
        return verify_file(args, console)
    if args.client is None:
        raise UsageError(f"audit {command}: --client PROFILE is needed (or --file for an offline verify)")
    with client_channel(ClientProfile.from_file(args.client)) as channel:
        stub = audit_pb2_grpc.AuditStub(channel)
        handlers: dict[str, Callable[[audit_pb2_grpc.AuditStub, argparse.Namespace, Console], int]] = {
            "verify": _verify,
            "export": _export,
            "head": _head,
            "checkpoints": _checkpoints,
            "pubkey": _pubkey,
            "list": _list,
        }
        return handlers[command](stub, args, console)


def _verify(stub: audit_pb2_grpc.AuditStub, args: argparse.Namespace, console: Console) -> int:
    kept = [audit_pb2.Checkpoint(**c.as_json()) for c in read_checkpoint_files(args.checkpoints)]
    request = audit_pb2.VerifyLogRequest(from_anchor=args.from_anchor, checkpoints=kept)
    report = stub.VerifyLog(request, timeout=TIMEOUT_S)
    result = VerifyResult(
        ok=report.ok,
        entries_checked=report.entries_checked,
        first_bad_seq=report.first_bad_seq,
        problem=report.problem,
        head_hash=report.head_hash,
        first_bad_decision_id=report.first_bad_decision_id,
        checkpoints_checked=report.checkpoints_checked,
        anchor_seq=report.anchor_seq,
        head_seq=report.head_seq,
        edited_columns=tuple(report.edited_columns),
    )
    for line in verify_report_lines(result, as_json=args.json):
        say(console, line, as_json=args.json)
    return 0 if report.ok else EXIT_BROKEN


def _export(stub: audit_pb2_grpc.AuditStub, args: argparse.Namespace, console: Console) -> int:
    request = audit_pb2.ExportLogRequest(filter=_filter(args))
    lines = (chunk.json_line for chunk in stub.ExportLog(request, timeout=TIMEOUT_S))
    if args.format == "jsonl":
        for line in lines:
            sys.stdout.write(line + "\n")
        return 0
    entries = (entry_from_json(line, f"exported entry {n}") for n, line in enumerate(lines, start=1))
    for text in csv_text(entries):
        sys.stdout.write(text)
    return 0


def _head(stub: audit_pb2_grpc.AuditStub, args: argparse.Namespace, console: Console) -> int:
    head = stub.GetHead(audit_pb2.GetHeadRequest(), timeout=TIMEOUT_S)
    doc = _checkpoint_doc(head)
    if args.json:
        sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
    else:
        console.print(
            f"head: entry {head.seq}, hash {head.head_hash}, signed {head.timestamp} by key {head.key_id}"
        )
    return 0


def _checkpoints(stub: audit_pb2_grpc.AuditStub, args: argparse.Namespace, console: Console) -> int:
    listed = stub.ListCheckpoints(audit_pb2.ListCheckpointsRequest(), timeout=TIMEOUT_S)
    if args.json:
        doc = {
            "key_id": listed.key_id,
            "public_key_pem": listed.public_key_pem,
            "checkpoints": [_checkpoint_doc(c) for c in listed.checkpoints],
        }
        sys.stdout.write(json.dumps(doc, sort_keys=True, indent=1) + "\n")
        return 0
    table = Table(header_style="bold")
    for column in ("seq", "kind", "time", "head hash", "key"):
        table.add_column(column)
    for c in listed.checkpoints:
        table.add_row(str(c.seq), c.kind, c.timestamp[:19], c.head_hash[:16] + "…", c.key_id)
    console.print(table)
    console.print(f"[dim]{len(listed.checkpoints)} checkpoint(s), signed by key {listed.key_id}[/dim]")
    return 0


def _pubkey(stub: audit_pb2_grpc.AuditStub, args: argparse.Namespace, console: Console) -> int:
    listed = stub.ListCheckpoints(audit_pb2.ListCheckpointsRequest(), timeout=TIMEOUT_S)
    sys.stdout.write(listed.public_key_pem)
    return 0


def _checkpoint_doc(c: audit_pb2.Checkpoint) -> dict[str, Any]:
    return {
        "seq": c.seq,
        "head_hash": c.head_hash,
        "timestamp": c.timestamp,
        "key_id": c.key_id,
        "kind": c.kind,
        "signature": c.signature,
    }


def _filter(args: argparse.Namespace) -> audit_pb2.ListDecisionsRequest:
    return audit_pb2.ListDecisionsRequest(
        since=args.since,
        until=args.until,
        principal=args.principal,
        agency=args.agency,
        agreement_id=args.agreement,
        outcome=args.outcome,
        decision_id=args.decision,
        limit=max(args.limit, 0),
    )


def _decisions(stub: audit_pb2_grpc.AuditStub, args: argparse.Namespace) -> Iterator[audit_pb2.Decision]:
    yield from stub.ListDecisions(_filter(args), timeout=TIMEOUT_S)


def _list(stub: audit_pb2_grpc.AuditStub, args: argparse.Namespace, console: Console) -> int:
    decisions = list(_decisions(stub, args))
    if args.json:
        for d in decisions:
            sys.stdout.write(
                json.dumps(
                    {
                        "seq": d.seq,
                        "decision_id": d.decision_id,
                        "timestamp": d.timestamp,
                        "principal": d.principal,
                        "action": d.action,
                        "agreement_id": d.agreement_id,
                        "outcome": d.outcome,
                        "reasons": list(d.reasons),
                        "cells_released": d.cells_released,
                        "cells_withheld": d.cells_withheld,
                        "erased": list(d.erased),
                        "hash": d.hash,
                    }
                )
                + "\n"
            )
        return 0
    table = Table(header_style="bold")
    for name in ("seq", "time", "principal", "action", "agreement", "outcome", "reasons", "cells"):
        table.add_column(name)
    for d in decisions:
        table.add_row(
            str(d.seq),
            d.timestamp[:19],
            d.principal.rsplit("/agency/", 1)[-1],
            d.action,
            d.agreement_id,
            d.outcome,
            "; ".join(d.reasons)[:80],
            f"{d.cells_released}/{d.cells_withheld}" if d.action == "query" and d.outcome == "allow" else "",
        )
    console.print(table)
    console.print(f"[dim]{len(decisions)} decision(s); cells shown as released/withheld[/dim]")
    return 0
