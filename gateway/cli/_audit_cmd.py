"""``gateway audit list|verify|export``: the auditor's commands (``report``: _audit_report.py)."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from gateway._pb import audit_pb2, audit_pb2_grpc
from gateway._settings import ClientProfile
from gateway._tls import client_channel
from gateway.cli._audit_report import run_report

TIMEOUT_S = 120.0


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
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")


def run(args: argparse.Namespace, console: Console) -> int:
    if args.audit_command == "report":
        return run_report(args, console)
    with client_channel(ClientProfile.from_file(args.client)) as channel:
        stub = audit_pb2_grpc.AuditStub(channel)
        if args.audit_command == "verify":
            report = stub.VerifyLog(audit_pb2.VerifyLogRequest(), timeout=TIMEOUT_S)
            if args.json:
                sys.stdout.write(
                    json.dumps(
                        {
                            "ok": report.ok,
                            "entries_checked": report.entries_checked,
                            "first_bad_seq": report.first_bad_seq,
                            "problem": report.problem,
                            "head_hash": report.head_hash,
                        }
                    )
                    + "\n"
                )
            elif report.ok:
                console.print(
                    f"audit log verified: {report.entries_checked} entries, chain intact, "
                    f"head {report.head_hash[:16]}…"
                )
            else:
                console.print(
                    f"[bold red]audit log BROKEN[/] at entry {report.first_bad_seq}: {report.problem}"
                )
            return 0 if report.ok else 6
        if args.audit_command == "export":
            for chunk in stub.ExportLog(audit_pb2.ExportLogRequest(), timeout=TIMEOUT_S):
                sys.stdout.write(chunk.json_line + "\n")
            return 0
        request = audit_pb2.ListDecisionsRequest(
            since=args.since,
            until=args.until,
            principal=args.principal,
            agency=args.agency,
            agreement_id=args.agreement,
            outcome=args.outcome,
            decision_id=args.decision,
            limit=max(args.limit, 0),
        )
        decisions = list(stub.ListDecisions(request, timeout=TIMEOUT_S))
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
