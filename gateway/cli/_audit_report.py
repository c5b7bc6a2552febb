"""``gateway audit report``: the auditor's summary of the decision log, in the terminal, as JSON,
or as a self-contained HTML page (gateway/cli/_report_html.py).

The figures are computed here, on the auditor's side, from ``ListDecisions`` (so the server's
audit scope applies) by the pure functions of gateway/audit/_report.py. The masked policy input
of each entry is dropped as it arrives: the report never needs it."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gateway._pb import audit_pb2, audit_pb2_grpc
from gateway._settings import ClientProfile
from gateway._tls import client_channel
from gateway.audit import AuditEntry, AuditReport, Tally, build_report, report_dict
from gateway.audit._budget import parse_time, stamp
from gateway.cli._client import UsageError
from gateway.cli._report_html import agreement_label, render_html, window_words

TIMEOUT_S = 300.0


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--since", default="", help="first timestamp, inclusive, RFC 3339, e.g. 2026-11-01T00:00:00Z"
    )
    p.add_argument("--until", default="", help="last timestamp, exclusive, RFC 3339")
    p.add_argument("--agreement", default="", help="only decisions under this agreement, e.g. ag-2026-001")
    p.add_argument(
        "--html", type=Path, metavar="FILE", help="also write the report as one self-contained HTML page"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")


def _window_time(option: str, text: str) -> str:
    """The option as the log's own timestamp form (UTC, Z), which the server compares as text."""
    if not text:
        return ""
    try:
        return stamp(parse_time(text))
    except ValueError:
        raise UsageError(f"{option}: not an RFC 3339 time, e.g. 2026-11-01T00:00:00Z") from None


def decision_entry(d: audit_pb2.Decision) -> AuditEntry:
    """A listed decision as an audit entry, without its masked input; a result that does not
    parse is treated as none (the report then shows no budget terms for it)."""
    try:
        result = json.loads(d.result_json) if d.result_json else {}
    except ValueError:
        result = {}
    return AuditEntry(
        decision_id=d.decision_id,
        timestamp=d.timestamp,
        path=d.path,
        principal=d.principal,
        agency=d.agency,
        action=d.action,
        outcome=d.outcome,  # type: ignore[arg-type]  # the server sends allow, deny or error
        reasons=tuple(d.reasons),
        agreement_id=d.agreement_id,
        purpose=d.purpose,
        policy_revision=d.policy_revision,
        query_fingerprint=d.query_fingerprint,
        cells_released=d.cells_released,
        cells_withheld=d.cells_withheld,
        latency_ms=d.latency_ms,
        result=result if isinstance(result, dict) else {},
        seq=d.seq,
        prev_hash=d.prev_hash,
        hash=d.hash,
    )


def run_report(args: argparse.Namespace, console: Console) -> int:
    since, until = _window_time("--since", args.since), _window_time("--until", args.until)
    if args.html is not None and not args.html.parent.is_dir():
        raise UsageError(f"--html: folder {args.html.parent} does not exist")
    request = audit_pb2.ListDecisionsRequest(since=since, until=until, agreement_id=args.agreement)
    with client_channel(ClientProfile.from_file(args.client)) as channel:
        stream = audit_pb2_grpc.AuditStub(channel).ListDecisions(request, timeout=TIMEOUT_S)
        report = build_report(
            (decision_entry(d) for d in stream), since=since, until=until, agreement_id=args.agreement
        )
    if args.html is not None:
        generated = stamp(dt.datetime.now(dt.UTC))
        try:
            args.html.write_text(render_html(report, generated=generated), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--html: cannot write {args.html}: {exc.strerror}") from None
    if args.json:
        sys.stdout.write(json.dumps(report_dict(report), sort_keys=True) + "\n")
    else:
        print_report(console, report)
        if args.html is not None:
            console.print(Text(f"HTML report written to {args.html}"))
    return 0


_NUMERIC = frozenset(
    {"allowed", "refused", "failed", "total", "entries", "queries answered", "cells released"}
    | {"cells withheld", "withheld", "budget", "releases", "epsilon spent", "decisions", "p50", "p99"}
)


def _table(title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", header_style="bold")
    for name in header:
        table.add_column(name, justify="right" if name in _NUMERIC else "left")
    for row in rows:
        table.add_row(*(Text(str(v)) for v in row))  # data, never markup
    return table


def _tally(t: Tally) -> tuple[int, int, int, int]:
    return t.allow, t.deny, t.error, t.total


def print_report(console: Console, report: AuditReport) -> None:
    o = report.outcomes
    console.print(Text(window_words(report)))
    console.print(
        Text(f"{o.total} decisions: {o.allow} allowed, {o.deny} refused, {o.error} failed", style="bold")
    )
    if not o.total:
        return
    outcome_header = ("allowed", "refused", "failed", "total")
    console.print(
        _table(
            "Decisions by agreement",
            ("agreement", *outcome_header),
            ((agreement_label(a), *_tally(t)) for a, t in report.by_agreement),
        )
    )
    console.print(
        _table(
            "Decisions by principal",
            ("principal", *outcome_header),
            # the SPIFFE id after its trust domain, as `gateway audit list` shows it
            ((p.rsplit("/agency/", 1)[-1], *_tally(t)) for p, t in report.by_principal),
        )
    )
    console.print(
        _table(
            "Decisions by action", ("action", *outcome_header), ((a, *_tally(t)) for a, t in report.by_action)
        )
    )
    if report.denials:
        console.print(
            _table(
                "Denials and their reasons",
                ("outcome", "entries", "reason", "agreements"),
                (
                    (d.outcome, d.count, d.reason, ", ".join(agreement_label(a) for a in d.agreements))
                    for d in report.denials
                ),
            )
        )
    if report.suppression:
        console.print(
            _table(
                "Suppression: cells withheld / (released + withheld)",
                ("agreement", "queries answered", "cells released", "cells withheld", "withheld"),
                (
                    (
                        s.agreement_id,
                        s.queries,
                        s.cells_released,
                        s.cells_withheld,
                        "—" if s.rate is None else f"{s.rate:.1%}",
                    )
                    for s in report.suppression
                ),
            )
        )
    if report.budgets:
        console.print(
            _table(
                "Query budget",
                ("agreement", "period", "queries answered", "budget", "renews on", "note"),
                (
                    (
                        b.agreement_id,
                        b.period or "(no query budget)",
                        b.used,
                        "—" if b.limit is None else b.limit,
                        b.renews_on or "—",
                        "partly outside the window" if b.partial else "",
                    )
                    for b in report.budgets
                ),
            )
        )
    if report.privacy:
        console.print(
            _table(
                "Privacy (noise) budget",
                ("agreement", "period", "releases", "epsilon spent", "renews on", "note"),
                (
                    (
                        p.agreement_id,
                        p.period,
                        p.releases,
                        f"{p.spent:g} of {p.budget:g}",
                        p.renews_on,
                        "partly outside the window" if p.partial else "",
                    )
                    for p in report.privacy
                ),
            )
        )
    console.print(
        _table(
            "Latency (ms)",
            ("action", "decisions", "p50", "p99"),
            (
                (x.action or "all decisions", x.count, f"{x.p50_ms:.1f}", f"{x.p99_ms:.1f}")
                for x in report.latency
            ),
        )
    )
