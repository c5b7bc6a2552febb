"""``gateway audit report --html FILE``: the auditor's report as ONE self-contained page.

No external URL, font, stylesheet or script: styles are inline, charts are inline SVG drawn by
gateway/cli/_svg.py, and a Content-Security-Policy forbids scripts and every fetch, so a page
mailed around or opened years later shows the same thing and cannot call out. Everything that
comes from the log (agreement ids, principals, reasons, actions) is HTML-escaped: it is data,
and a reason could carry markup."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from html import escape

from gateway.audit import AuditReport, Tally
from gateway.cli._svg import OUTCOME_COLOURS, Row, column_chart, hbar_chart

NO_AGREEMENT = "(no agreement)"
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.summary span { display: inline-block; margin-right: 1.5em; } .muted { color: #666; }
.allow { color: #2e7d32; } .deny { color: #c62828; } .error { color: #ef6c00; }
svg.chart { display: block; margin: 0.8em 0; background: #fff; }
"""


def agreement_label(agreement_id: str) -> str:
    return agreement_id or NO_AGREEMENT


def _cell(value: object, *, number: bool = False, cls: str = "") -> str:
    classes = " ".join(c for c in ("n" if number else "", cls) if c)
    attr = f' class="{classes}"' if classes else ""
    return f"<td{attr}>{escape(str(value))}</td>"


def _table(caption: str, header: Sequence[str], rows: Iterable[str]) -> str:
    body = "".join(rows)
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    return (
        f'<table aria-label="{escape(caption)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def _tally_rows(pairs: Sequence[tuple[str, Tally]], label: Callable[[str], str] = str) -> list[str]:
    return [
        "<tr>"
        + _cell(label(key))
        + _cell(t.allow, number=True, cls="allow")
        + _cell(t.deny, number=True, cls="deny")
        + _cell(t.error, number=True, cls="error")
        + _cell(t.total, number=True)
        + "</tr>"
        for key, t in pairs
    ]


def _rate(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.1%}"


def window_words(report: AuditReport) -> str:
    since, until = report.since or "the first entry", report.until or "now"
    scope = f", agreement {report.agreement_id}" if report.agreement_id else ""
    return f"Decisions from {since} until {until}{scope}, as far as your audit scope lets you see."


def render_html(report: AuditReport, *, generated: str) -> str:
    outcomes = report.outcomes
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Audit report — datashare gateway</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Audit report</h1>",
        (
            f'<p class="muted">{escape(window_words(report))} Generated {escape(generated)}. '
            f"Entries seen: {escape(report.first or '—')} to {escape(report.last or '—')}.</p>"
        ),
        (
            '<p class="summary">'
            f"<span><strong>{outcomes.total}</strong> decisions</span>"
            f'<span class="allow"><strong>{outcomes.allow}</strong> allowed</span>'
            f'<span class="deny"><strong>{outcomes.deny}</strong> refused</span>'
            f'<span class="error"><strong>{outcomes.error}</strong> failed</span></p>'
        ),
    ]
    parts += _decisions(report)
    parts += _denials(report)
    parts += _suppression(report)
    parts += _budgets(report)
    parts += _latency(report)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _decisions(report: AuditReport) -> list[str]:
    by_agreement = [Row(agreement_label(a), (t.allow, t.deny, t.error)) for a, t in report.by_agreement]
    timeline = [Row(b.label, (b.tally.allow, b.tally.deny, b.tally.error)) for b in report.timeline]
    header = ["allowed", "refused", "failed", "total"]
    return [
        "<h2>Decisions by agreement and outcome</h2>",
        hbar_chart("Decisions by agreement and outcome", by_agreement, OUTCOME_COLOURS)
        if by_agreement
        else '<p class="muted">No decisions in this window.</p>',
        _table(
            "decisions by agreement",
            ["agreement", *header],
            _tally_rows(report.by_agreement, agreement_label),
        ),
        f"<h2>Decisions over time (per {escape(report.grain)})</h2>",
        column_chart(f"Decisions per {report.grain}", timeline, OUTCOME_COLOURS) if timeline else "",
        "<h2>Decisions by principal</h2>",
        _table("decisions by principal", ["principal", *header], _tally_rows(report.by_principal)),
        "<h2>Decisions by action</h2>",
        _table("decisions by action", ["action", *header], _tally_rows(report.by_action)),
    ]


def _denials(report: AuditReport) -> list[str]:
    rows = [
        "<tr>"
        + _cell(d.outcome, cls=d.outcome)
        + _cell(d.count, number=True)
        + _cell(d.reason)
        + _cell(", ".join(agreement_label(a) for a in d.agreements))
        + "</tr>"
        for d in report.denials
    ]
    body = (
        _table("denials and their reasons", ["outcome", "entries", "reason", "agreements"], rows)
        if rows
        else '<p class="muted">No refused or failed decisions in this window.</p>'
    )
    return ["<h2>Denials and their reasons</h2>", body]


def _suppression(report: AuditReport) -> list[str]:
    rows = [
        "<tr>"
        + _cell(s.agreement_id)
        + _cell(s.queries, number=True)
        + _cell(s.cells_released, number=True)
        + _cell(s.cells_withheld, number=True)
        + _cell(_rate(s.rate), number=True)
        + "</tr>"
        for s in report.suppression
    ]
    if not rows:
        return ["<h2>Suppression</h2>", '<p class="muted">No answered queries in this window.</p>']
    bars = [Row(s.agreement_id, (s.rate or 0.0,)) for s in report.suppression]
    return [
        "<h2>Suppression</h2>",
        '<p class="muted">Cells withheld / (released + withheld), over the answered queries.</p>',
        hbar_chart("Share of cells withheld", bars, (("withheld", "#6a1b9a"),), maximum=1.0, percent=True),
        _table(
            "suppression rates",
            ["agreement", "queries answered", "cells released", "cells withheld", "withheld"],
            rows,
        ),
    ]


def _budgets(report: AuditReport) -> list[str]:
    query_rows = [
        "<tr>"
        + _cell(b.agreement_id)
        + _cell(b.period or "(no query budget)")
        + _cell(b.used, number=True)
        + _cell("—" if b.limit is None else b.limit, number=True)
        + _cell("—" if b.limit is None else f"{b.used / b.limit:.0%}", number=True)
        + _cell(b.renews_on or "—")
        + _cell("partly outside the window" if b.partial else "")
        + "</tr>"
        for b in report.budgets
    ]
    privacy_rows = [
        "<tr>"
        + _cell(p.agreement_id)
        + _cell(p.period)
        + _cell(p.releases, number=True)
        + _cell(f"{p.epsilon:g}", number=True)
        + _cell(f"{p.spent:g} of {p.budget:g}", number=True)
        + _cell(p.renews_on)
        + _cell("partly outside the window" if p.partial else "")
        + "</tr>"
        for p in report.privacy
    ]
    header = ["agreement", "period", "queries answered", "budget", "used", "renews on", "note"]
    return [
        "<h2>Query budget</h2>",
        _table("query budget", header, query_rows)
        if query_rows
        else '<p class="muted">No answered queries in this window.</p>',
        "<h2>Privacy (noise) budget</h2>",
        _table(
            "privacy budget",
            ["agreement", "period", "releases", "epsilon each", "epsilon spent", "renews on", "note"],
            privacy_rows,
        )
        if privacy_rows
        else '<p class="muted">No answered query in this window was under an agreement that adds noise.</p>',
    ]


def _latency(report: AuditReport) -> list[str]:
    rows = [
        "<tr>"
        + _cell(x.action or "all decisions")
        + _cell(x.count, number=True)
        + _cell(f"{x.p50_ms:.1f}", number=True)
        + _cell(f"{x.p99_ms:.1f}", number=True)
        + "</tr>"
        for x in report.latency
    ]
    return [
        "<h2>Latency</h2>",
        _table("latency", ["action", "decisions", "p50 ms", "p99 ms"], rows)
        if rows
        else '<p class="muted">No decisions in this window.</p>',
    ]
