"""The auditor's HTML report page (gateway/cli/_report_html.py, _svg.py): self-contained and
escaped. The page as a browser renders it is tested in tests/e2e/test_audit_report.py."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console

from gateway.audit import AuditEntry, build_report
from gateway.cli import main
from gateway.cli._audit_report import print_report
from gateway.cli._report_html import render_html

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
ATTRIBUTE_BREAK = '" onmouseover="alert(2)'


class _Tags(HTMLParser):
    """Every start tag and its attributes, as a browser's tokenizer would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _entry(**fields: object) -> AuditEntry:
    base: dict[str, object] = {
        "decision_id": "d",
        "timestamp": "2026-11-10T12:00:00.000000Z",
        "path": "",
        "principal": "spiffe://datashare.local/agency/health/analyst/a",
        "agency": "health",
        "action": "query",
        "outcome": "deny",
        "reasons": (HOSTILE,),
        "agreement_id": HOSTILE[:40],
    }
    return AuditEntry(**{**base, **fields})  # type: ignore[arg-type]


def _page() -> str:
    rows = [
        _entry(),
        _entry(principal=ATTRIBUTE_BREAK, reasons=(ATTRIBUTE_BREAK,)),
        _entry(outcome="allow", reasons=(), cells_released=3, cells_withheld=1, agreement_id=HOSTILE),
    ]
    return render_html(build_report(rows), generated="2026-11-10T12:00:00Z")


def test_log_text_with_markup_is_shown_as_text_never_as_markup() -> None:
    """A reason, agreement id or principal holding tags or a quote breaking out of an attribute
    comes out as text: no script or img element, no event-handler attribute, and the text reads
    as it was logged (in the tables and in the charts' tooltips)."""
    page = _page()
    parsed = _Tags()
    parsed.feed(page)
    names = [tag for tag, _ in parsed.tags]
    assert "script" not in names and "img" not in names
    assert not any(key.startswith("on") for _, attrs in parsed.tags for key in attrs)
    text = "".join(parsed.text)
    assert HOSTILE in text and ATTRIBUTE_BREAK in text


def test_page_is_self_contained_and_forbids_scripts_and_fetches() -> None:
    """No element loads anything (no src, href or CSS url()), and the page's CSP allows no script
    and no connection, so even a mistake in escaping could not run or call out."""
    page = _page()
    parsed = _Tags()
    parsed.feed(page)
    assert not [attrs for _, attrs in parsed.tags if {"src", "href", "srcset", "action"} & set(attrs)]
    assert "url(" not in page and "@import" not in page
    (csp,) = [
        a["content"]
        for t, a in parsed.tags
        if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    ]
    assert csp is not None and "default-src 'none'" in csp and "script-src" not in csp
    assert [t for t, _ in parsed.tags].count("svg") == 3  # outcomes by agreement, over time, suppression


def test_report_rejects_a_window_that_is_not_a_time(capsys: pytest.CaptureFixture[str]) -> None:
    """--since that is not RFC 3339 is a usage error (exit 2) naming the option, before any connection."""
    code = main(["audit", "report", "--client", "/nonexistent.toml", "--since", "last tuesday"])
    assert code == 2
    assert "--since" in capsys.readouterr().err


def test_report_refuses_an_html_path_in_a_missing_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--html into a folder that does not exist is a usage error (exit 2) naming the option."""
    page = tmp_path / "missing" / "report.html"
    code = main(["audit", "report", "--client", "/nonexistent.toml", "--html", str(page)])
    assert code == 2
    assert "--html" in capsys.readouterr().err and not page.exists()


def test_terminal_report_prints_log_text_literally() -> None:
    """Console markup in a logged reason or agreement id ("[red]…[/red]") is printed as written,
    not interpreted: the auditor reads what the log holds."""
    marked = "[bold red]all clear[/bold red]"
    console = Console(record=True, width=200)
    print_report(console, build_report([_entry(reasons=(marked,), agreement_id="[link=x]ag[/link]")]))
    text = console.export_text()
    assert marked in text and "[link=x]ag[/link]" in text
