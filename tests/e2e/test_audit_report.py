"""`gateway audit report` as an auditor runs it against a real gateway (mTLS, SQLite and
PostgreSQL) serving the shipped agreement with a query budget and noise: the figures match the
traffic, and the HTML page, opened in a real headless Chromium, renders its charts and tables and
shows hostile log text as text."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import grpc
import pytest
from e2e_harness import Running, ed_rows, seal, serve_with_terms, subjects_query
from headless import dump_dom, screenshot
from PIL import Image

from gateway._pb import audit_pb2
from gateway.audit import budget_period
from gateway.audit._budget import parse_time
from gateway.cli import main
from gateway.pki import PkiLayout

AG = "ag-2026-001"
TERMS = "  query_budget: {queries: 5, period: month}\n  noise: {epsilon: 0.5, budget: 10, period: year}\n"
HOSTILE_AGREEMENT = "<script>document.title='pwned'</script>"
ANSWERED = 3
CHART_PURPLE = (0x6A, 0x1B, 0x9A)  # the suppression bars; used nowhere else on the page
ALLOW_GREEN = (0x2E, 0x7D, 0x32)
DENY_RED = (0xC6, 0x28, 0x28)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def budgeted(request: pytest.FixtureRequest, pki: PkiLayout, tmp_path: Path) -> Iterator[Running]:
    """The shipped bundle with a query budget (5 a month) and noise (epsilon 0.5 of 10 a year)."""
    yield from serve_with_terms(request.param, pki, tmp_path, TERMS)


@pytest.fixture
def budgeted_sqlite(pki: PkiLayout, tmp_path: Path) -> Iterator[Running]:
    """The same on SQLite only: the page does not depend on the backend, one browser run is enough."""
    yield from serve_with_terms("sqlite", pki, tmp_path, TERMS)


def _traffic(running: Running) -> None:
    """An ingest, three answered queries, a refusal of the police analyst, and a query naming an
    agreement that is markup."""
    rows = ed_rows("D01", 3) + ed_rows("D02", 12) + ed_rows("D03", 15) + ed_rows("D04", 40)
    running.ingest("agent:health").PushBatch(seal(running.layout, "health", "ed_visits", rows))
    for _ in range(ANSWERED):
        running.query("health-analyst").Aggregate(subjects_query(group_by=["district"]))
    for analyst, agreement in (("police-analyst", AG), ("health-analyst", HOSTILE_AGREEMENT)):
        with pytest.raises(grpc.RpcError):
            running.query(analyst).Aggregate(subjects_query(agreement_id=agreement))


def _profile(running: Running, tmp_path: Path) -> str:
    """The dev PKI's auditor profile (the oversight office: sees everything), at this gateway."""
    text = running.layout.client_profile("auditor").read_text()
    path = tmp_path / "auditor.toml"
    path.write_text(re.sub(r'(?m)^address = ".*"$', f'address = "{running.address}"', text))
    return str(path)


def _report(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["audit", "report", *argv])
    return code, capsys.readouterr().out


def test_report_figures_match_the_traffic(
    budgeted: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json counts the answered and refused queries under the agreement, the suppression rate
    from the logged cells, the query budget used this month and the privacy budget spent this
    year, exactly as the decisions listed by the Audit service add up."""
    _traffic(budgeted)
    listed = list(budgeted.audit().ListDecisions(audit_pb2.ListDecisionsRequest(agreement_id=AG)))
    answered = [d for d in listed if d.action == "query" and d.outcome == "allow"]
    released, withheld = sum(d.cells_released for d in answered), sum(d.cells_withheld for d in answered)
    code, out = _report(capsys, "--client", _profile(budgeted, tmp_path), "--agreement", AG, "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["by_agreement"] == [{"agreement_id": AG, "allow": ANSWERED, "deny": 1, "error": 0, "total": 4}]
    assert [(d["outcome"], d["count"]) for d in doc["denials"]] == [("deny", 1)]
    (supp,) = doc["suppression"]
    assert (supp["queries"], supp["cells_released"], supp["cells_withheld"]) == (ANSWERED, released, withheld)
    assert (
        supp["rate"] == pytest.approx(withheld / (released + withheld)) and 0 < withheld < released + withheld
    )
    month = budget_period("month", parse_time(answered[-1].timestamp)).label
    (budget,) = doc["query_budget"]
    assert (budget["period"], budget["used"], budget["limit"]) == (month, ANSWERED, 5)
    (privacy,) = doc["privacy_budget"]
    assert (privacy["releases"], privacy["spent"], privacy["budget"]) == (ANSWERED, 1.5, 10.0)
    assert {x["action"] for x in doc["latency_ms"]} == {"all", "query"}


def test_terminal_report_shows_tables_and_the_refusal_reasons(
    budgeted: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json the report prints its tables, the refusal reasons as logged (markup in
    them printed literally), and the budget use against the limit."""
    _traffic(budgeted)
    code, out = _report(capsys, "--client", _profile(budgeted, tmp_path))
    assert code == 0
    for heading in ("Decisions by agreement", "Decisions by principal", "Denials and their reasons"):
        assert heading in out
    assert "not a receiving" in out and "<script>" in out  # the reason is shown as logged text
    assert re.search(r"ag-2026-001 .*│ +3 │ +5 │", out)  # 3 of 5 queries this month


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: Counter[str] = Counter()
        self.handlers: list[str] = []
        self.text: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.handlers += [k for k, _ in attrs if k.startswith("on")]
        self._in_title = tag == "title" and not self.title

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_title:
            self.title, self._in_title = data, False


def test_html_report_renders_charts_and_tables_in_a_real_browser(
    budgeted_sqlite: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Chromium renders the page: the screenshot is not blank (many colours, the chart bars'
    colours over large areas), the DOM holds the tables and three SVG charts, and the agreement id
    that is a script tag is text in the page, not a script (the title is unchanged)."""
    _traffic(budgeted_sqlite)
    page = tmp_path / "report.html"
    code, out = _report(capsys, "--client", _profile(budgeted_sqlite, tmp_path), "--html", str(page))
    assert code == 0 and "HTML report written to" in out

    png = tmp_path / "report.png"
    screenshot(page, png, tmp_path / "chrome-shot")
    with Image.open(png) as shot:
        rgb = shot.convert("RGB")
        pixels = Counter({colour: n for n, colour in rgb.getcolors(maxcolors=rgb.width * rgb.height) or []})
    assert len(pixels) > 50  # text, tables and charts; a blank page has one colour
    assert sum(n for colour, n in pixels.items() if colour != (255, 255, 255)) > 20_000
    for bars in (CHART_PURPLE, ALLOW_GREEN, DENY_RED):
        assert pixels[bars] > 300, f"no chart bars of colour {bars}"

    dom = _Dom()
    dom.feed(dump_dom(page, tmp_path / "chrome-dom"))
    assert dom.tags["table"] >= 7 and dom.tags["tr"] > 15
    assert dom.tags["svg"] == 3 and dom.tags["rect"] > 6
    assert dom.tags["script"] == 0 and not dom.handlers
    assert dom.title.startswith("Audit report")
    assert HOSTILE_AGREEMENT in "".join(dom.text)
