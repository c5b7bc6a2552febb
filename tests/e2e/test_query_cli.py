"""`gateway datasets` and `gateway query` as an analyst runs them, against a real gateway: the
table, --json, --csv and --chart outputs, and refusals."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_harness import Running, ed_rows, seal

from gateway._pb import query_pb2, query_pb2_grpc
from gateway.cli import main
from gateway.cli._chart import chart_data
from gateway.pki import PkiLayout

BASE = [
    "--agreement",
    "ag-2026-001",
    "--purpose",
    "overdose-prevention",
    "--dataset",
    "ed_visits",
]
FOUR_DISTRICTS = ["--filter", "district=D01,D02,D03,D04"]
MONTHS = ["2025-01", "2025-02", "2025-03", "2025-04", "2025-05", "2025-06"]


def _profile(running: Running, tmp_path: Path, name: str = "health-analyst") -> str:
    """The dev PKI's client profile, pointed at this test's gateway port."""
    text = running.layout.client_profile(name).read_text()
    text = re.sub(r'(?m)^address = ".*"$', f'address = "{running.address}"', text)
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return str(path)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _push_districts(running: Running) -> None:
    """D01 holds 3 people (under k = 10), D02 12, D03 15, D04 40: D01 is withheld, and D02 with it
    so that D01 cannot be worked out from the released total."""
    rows = ed_rows("D01", 3) + ed_rows("D02", 12) + ed_rows("D03", 15) + ed_rows("D04", 40)
    running.ingest("agent:health").PushBatch(seal(running.layout, "health", "ed_visits", rows))


def _push_months(running: Running) -> None:
    """20 people a month in D05 and D06 for six months, except D05 in March (4 people), and 2025-05
    empty for D06."""
    rows = []
    for month in MONTHS:
        rows += ed_rows("D05", 4 if month == "2025-03" else 20, month=month, prefix=f"{month}-")
        if month != "2025-05":
            rows += ed_rows("D06", 20, month=month, prefix=f"{month}-")
    running.ingest("agent:health").PushBatch(seal(running.layout, "health", "ed_visits", rows))


def test_table_marks_withheld_cells_and_states_k_rounding_and_decision(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table shows withheld cells as 'withheld' (never 0), then k, the rounding base and the decision id."""
    _push_districts(running)
    code, out, _ = _run(
        capsys,
        "query",
        "--client",
        _profile(running, tmp_path),
        *BASE,
        "--group-by",
        "district",
        *FOUR_DISTRICTS,
    )
    assert code == 0
    rows = {line.split()[1]: line for line in out.splitlines() if re.match(r"^\S\s+D0\d\s", line)}
    assert "withheld" in rows["D01"] and "withheld" in rows["D02"]
    assert re.search(r"\b15\b", rows["D03"]) and re.search(r"\b40\b", rows["D04"])
    flat = " ".join(out.split())
    assert "k = 10 distinct people" in flat
    assert "rounded to the nearest 5" in flat
    assert re.search(r"decision [0-9a-f-]{8,}", flat)


def test_json_has_cells_total_and_disclosure_with_withheld_as_null(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json: one object per cell keyed by dimension and measure, withheld values null, the total and the terms."""
    _push_districts(running)
    code, out, _ = _run(
        capsys,
        "query",
        "--client",
        _profile(running, tmp_path),
        *BASE,
        "--group-by",
        "district",
        *FOUR_DISTRICTS,
        "--measure",
        "subjects",
        "--measure",
        "records",
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["group_by"] == ["district"] and doc["measures"] == ["subjects", "records"]
    assert doc["cells"] == [
        {"district": "D01", "subjects": None, "records": None},
        {"district": "D02", "subjects": None, "records": None},
        {"district": "D03", "subjects": 15, "records": 15},
        {"district": "D04", "subjects": 40, "records": 40},
    ]
    assert doc["total"] == {"subjects": 70, "records": 70}
    assert {k: doc["disclosure"][k] for k in ("k", "round_to", "cells_withheld", "agreement_id")} == {
        "k": 10,
        "round_to": 5,
        "cells_withheld": 2,
        "agreement_id": "ag-2026-001",
    }
    assert doc["disclosure"]["decision_id"]


def test_csv_is_a_header_and_one_row_per_cell_with_withheld_fields_empty(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--csv: header, one row per grid cell, no total row; a withheld value is an empty field, never 0."""
    _push_districts(running)
    code, out, _ = _run(
        capsys,
        "query",
        "--client",
        _profile(running, tmp_path),
        *BASE,
        "--group-by",
        "district",
        *FOUR_DISTRICTS,
        "--csv",
    )
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows == [["district", "subjects"], ["D01", ""], ["D02", ""], ["D03", "15"], ["D04", "40"]]


def test_chart_data_has_a_gap_where_a_month_is_withheld(running: Running) -> None:
    """A withheld month is NaN in the chart's series (a gap), not 0; released months carry their values."""
    _push_months(running)
    stub = query_pb2_grpc.QueryStub(running.channel("health-analyst"))
    result = stub.Aggregate(
        query_pb2.AggregateRequest(
            agreement_id="ag-2026-001",
            purpose="overdose-prevention",
            dataset="ed_visits",
            measures=[query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUBJECTS)],
            group_by=["month", "district"],
            filters=[query_pb2.ValueFilter(dimension="district", values=["D05", "D06"])],
            months=query_pb2.MonthRange(first="2025-01", last="2025-06"),
        )
    )
    data = chart_data(result, "ed_visits")
    assert (data.kind, data.x_name, data.x, data.split_by) == ("line", "month", tuple(MONTHS), "district")
    d05, d06 = data.panels[0].series
    assert (d05.label, d06.label) == ("D05", "D06")
    assert math.isnan(d05.values[2]) and math.isnan(d06.values[4])  # 4 people; nobody
    assert [v for i, v in enumerate(d05.values) if i != 2 and not math.isnan(v)] != []
    assert all(v == 20 for v in d06.values if not math.isnan(v))
    assert "k = 10" in data.note and "rounded to 5" in data.note
    assert data.title.startswith("ag-2026-001 · ed_visits: subjects")


def test_chart_png_over_months_is_a_real_image_and_not_blank(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--chart trend.png writes a PNG that decodes, with varied pixels (something was drawn), beside the table."""
    from matplotlib import image

    _push_months(running)
    chart = tmp_path / "trend.png"
    code, out, _ = _run(
        capsys,
        "query",
        "--client",
        _profile(running, tmp_path),
        *BASE,
        "--group-by",
        "month",
        "--filter",
        "district=D05",
        "--months",
        "2025-01:2025-06",
        "--chart",
        str(chart),
    )
    assert code == 0 and "chart written to" in out
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(chart)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 400
    assert float(pixels[..., :3].std()) > 0.05


def test_chart_svg_of_bars_by_district_is_valid_svg(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--chart bars.svg with --csv writes an SVG document with drawn paths and the word 'withheld', and stdout holds only CSV."""
    _push_districts(running)
    chart = tmp_path / "bars.svg"
    code, out, _ = _run(
        capsys,
        "query",
        "--client",
        _profile(running, tmp_path),
        *BASE,
        "--group-by",
        "district",
        *FOUR_DISTRICTS,
        "--csv",
        "--chart",
        str(chart),
    )
    assert code == 0 and out.startswith("district,subjects\n") and "chart" not in out
    root = ET.parse(chart).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert len(root.findall(".//{http://www.w3.org/2000/svg}path")) > 10
    assert "withheld" in chart.read_text()


def test_refused_query_prints_the_reason_and_exits_3(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A query the agreement does not allow exits 3, prints nothing on stdout and the policy's reason on stderr."""
    _push_districts(running)
    code, out, err = _run(
        capsys, "query", "--client", _profile(running, tmp_path), *BASE, "--group-by", "presentation"
    )
    assert code == 3
    assert out == ""
    # the in-process gateway logs to the same stderr: read from the command's own words on
    refusal = err[err.index("gateway: refused under agreement ag-2026-001:") :]
    assert "grouping by 'presentation' is not allowed" in refusal
    assert not re.search(r"\d", refusal.replace("ag-2026-001", ""))


def test_a_chart_that_cannot_be_drawn_is_refused_before_the_query_is_sent(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--chart with a suffix other than .png/.svg exits 2 naming --chart, and no query reaches the gateway."""
    code, _, err = _run(
        capsys,
        "query",
        "--client",
        _profile(running, tmp_path),
        *BASE,
        "--group-by",
        "district",
        "--chart",
        str(tmp_path / "trend.pdf"),
    )
    assert code == 2
    assert "--chart" in err and ".png or .svg" in err
    assert running.gateway.shared.store.queries_allowed("ag-2026-001", "0000", "9999") == 0


def test_datasets_table_and_json_say_how_each_dataset_may_be_queried(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gateway datasets` lists every term a query is held to: purposes, dimensions and time, forbidden
    combinations, measures with their clamps, filters with values, k, rounding, cells, budget."""
    profile = _profile(running, tmp_path)
    code, out, _ = _run(capsys, "datasets", "--client", profile, "--json")
    assert code == 0
    doc = {entry["dataset"]: entry for entry in json.loads(out)}
    ed = doc["ed_visits"]
    assert ed["agreement_id"] == "ag-2026-001"
    assert ed["purposes"] == ["overdose-prevention"]
    assert ed["time_grains"] == ["month", "quarter", "year"]
    assert set(ed["group_by"]) == {"district", "age_band", "sex"}
    assert ed["forbidden_combinations"] == [["age_band", "district"]]
    assert "sum:length_of_stay_hours" in ed["measures"]
    assert "presentation" in ed["filters"] and "overdose" in ed["values"]["presentation"]
    assert (ed["k"], ed["round_to"], ed["max_cells"], ed["max_group_by"]) == (10, 5, 2000, 3)
    assert ed["query_budget"] is None

    code, out, _ = _run(capsys, "datasets", "--client", profile)
    assert code == 0
    flat = " ".join(out.split())
    for words in ("never together", "age_band with district", "k = 10", "rounded to 5", "no cap on queries"):
        assert words in flat
    assert "gateway query --client PROFILE --agreement ag-2026-001" in flat


@pytest.fixture
def budgeted(pki: PkiLayout, tmp_path: Path) -> Iterator[Running]:
    """A gateway whose agreement caps queries at 3 a month."""
    import dataclasses

    from e2e_harness import _Serve, budgeted_bundle

    from gateway._settings import GatewaySettings

    bundle = budgeted_bundle(tmp_path, queries=3)
    settings = GatewaySettings.from_file(pki.gateway_config)
    settings = dataclasses.replace(
        settings, policy=dataclasses.replace(settings.policy, bundle=bundle, reload_interval_s=0)
    )
    with _Serve(settings, f"sqlite:///{tmp_path / 'gateway.db'}", pki) as served:
        yield served


def test_datasets_shows_the_query_budget(
    budgeted: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An agreement with a query budget is listed with it, in the table and in --json."""
    profile = _profile(budgeted, tmp_path)
    _, out, _ = _run(capsys, "datasets", "--client", profile, "--json")
    assert {e["dataset"]: e["query_budget"] for e in json.loads(out)}["ed_visits"] == {
        "queries": 3,
        "period": "month",
    }
    _, out, _ = _run(capsys, "datasets", "--client", profile)
    assert "3 queries per month" in " ".join(out.split())
