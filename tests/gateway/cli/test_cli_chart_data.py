"""What `gateway query --chart` draws and what --csv prints, from results shaped as the gateway
sends them: the chart's kind and axes follow the grouping, and a withheld value is a gap (NaN) or
an empty field, never 0."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gateway._pb import query_pb2
from gateway.cli._chart import chart_data, check_chart_option, draw_chart
from gateway.cli._client import UsageError
from gateway.cli._render import result_csv

SUBJECTS = query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUBJECTS)
SUM = query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUM, field="length_of_stay_hours")


def _result(
    group_by: list[str], cells: dict[tuple[str, ...], list[float | None]], total: list[float | None]
) -> query_pb2.AggregateResult:
    """A result in the gateway's form; None is a withheld value (sent as withheld, 0)."""

    def cell(key: tuple[str, ...], values: list[float | None]) -> query_pb2.Cell:
        return query_pb2.Cell(
            key=list(key),
            values=[query_pb2.CellValue(withheld=v is None, value=0.0 if v is None else v) for v in values],
        )

    measures = [SUBJECTS, SUM][: len(total)]
    return query_pb2.AggregateResult(
        group_by=group_by,
        measures=measures,
        cells=[cell(k, v) for k, v in cells.items()],
        total=cell((), total),
        disclosure=query_pb2.DisclosureInfo(k=10, round_to=5, agreement_id="ag-1", decision_id="d-1"),
    )


def test_bars_by_district_with_a_withheld_district_as_nan() -> None:
    """Grouped by a dimension only: bars in grid order, one series, the withheld district NaN."""
    result = _result(["district"], {("D01",): [None], ("D02",): [40.0], ("D03",): [0.0]}, [55.0])
    data = chart_data(result, "ed_visits")
    assert (data.kind, data.x_name, data.x, data.split_by) == ("bar", "district", ("D01", "D02", "D03"), "")
    (series,) = data.panels[0].series
    assert math.isnan(series.values[0])
    assert series.values[1:] == (40.0, 0.0)  # a released zero stays a zero


def test_one_panel_per_measure_and_time_as_x_whatever_its_position() -> None:
    """Grouped by district then quarter: quarters on x, a series per district, a panel per measure."""
    cells = {
        ("D01", "2025-Q1"): [20.0, 80.0],
        ("D01", "2025-Q2"): [None, None],
        ("D02", "2025-Q1"): [30.0, 90.0],
        ("D02", "2025-Q2"): [35.0, 100.0],
    }
    data = chart_data(_result(["district", "quarter"], cells, [85.0, 270.0]), "ed_visits")
    assert (data.kind, data.x, data.split_by) == ("line", ("2025-Q1", "2025-Q2"), "district")
    assert [p.measure for p in data.panels] == ["subjects", "sum:length_of_stay_hours"]
    d01 = data.panels[1].series[0]
    assert d01.label == "D01" and d01.values[0] == 80.0 and math.isnan(d01.values[1])


def test_no_grouping_draws_the_total_as_one_bar() -> None:
    """Without group-by the chart is one bar, the total; the title names agreement, dataset and measure."""
    data = chart_data(_result([], {(): [120.0]}, [120.0]), "ed_visits")
    assert (data.kind, data.x, data.panels[0].series[0].values) == ("bar", ("total",), (120.0,))
    assert data.title == "ag-1 · ed_visits: subjects by total"


def test_an_all_withheld_chart_still_draws(tmp_path: Path) -> None:
    """Every cell withheld: the PNG is written (an empty, labelled chart), not an error or a row of zeros."""
    data = chart_data(_result(["month"], {("2025-01",): [None], ("2025-02",): [None]}, [None]), "ed")
    assert all(math.isnan(v) for v in data.panels[0].series[0].values)
    draw_chart(data, tmp_path / "empty.png")
    assert (tmp_path / "empty.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("name", "group_by", "words"),
    [
        ("trend.pdf", ["month"], ".png or .svg"),
        ("trend.png", ["month", "district", "sex"], "at most 2 --group-by"),
        ("missing/trend.png", ["month"], "does not exist"),
    ],
)
def test_a_chart_that_cannot_be_drawn_is_a_usage_error_naming_chart(
    tmp_path: Path, name: str, group_by: list[str], words: str
) -> None:
    """A wrong suffix, three dimensions or a missing folder is refused naming --chart, before any query."""
    with pytest.raises(UsageError) as refused:
        check_chart_option(tmp_path / name, group_by)
    assert str(refused.value).startswith("--chart") and words in str(refused.value)


def test_csv_without_grouping_is_the_total_as_its_one_row() -> None:
    """--csv of a query without group-by: the header and the total; a withheld sum is an empty field."""
    assert result_csv(_result([], {(): [120.0, None]}, [120.0, None])) == (
        "subjects,sum:length_of_stay_hours\n120,\n"
    )
