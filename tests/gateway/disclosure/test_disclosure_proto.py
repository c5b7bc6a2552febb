"""to_proto: the wire form of a release, from a validated request through to AggregateResult."""

from __future__ import annotations

from raw_cells import spread

from gateway._pb import query_pb2
from gateway.catalogue import Catalogue
from gateway.disclosure import ReleaseInfo, apply_disclosure, build_grid, to_proto
from gateway.query import QuerySpec, RawCell, RawResult, validate_request

INFO = ReleaseInfo(
    k=10, round_to=5, decision_id="dec-1", policy_revision="rev-abc", agreement_id="ag-2026-001"
)


def request() -> query_pb2.AggregateRequest:
    return query_pb2.AggregateRequest(
        agreement_id="ag-2026-001",
        purpose="overdose-prevention",
        dataset="ed_visits",
        measures=[
            query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_RECORDS),
            query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_MEAN, field="cost"),
        ],
        group_by=["quarter", "sex"],
        filters=[query_pb2.ValueFilter(dimension="sex", values=["M", "F"])],
        months=query_pb2.MonthRange(first="2023-12", last="2024-01"),
    )


def answer(spec: QuerySpec, catalogue: Catalogue, small: RawCell | None) -> query_pb2.AggregateResult:
    cells = [
        RawCell(("2023-Q4", "M"), 30, 40, {"cost": 400.0}, spread({"cost": 400.0}, 30)),
        RawCell(("2024-Q1", "F"), 50, 61, {"cost": 1000.0}, spread({"cost": 1000.0}, 50)),
        RawCell(("2024-Q1", "M"), 20, 20, {"cost": 100.0}, spread({"cost": 100.0}, 20)),
    ]
    if small is not None:
        cells.append(small)
    subjects = 100 + (small.subjects if small else 0)
    total = RawCell((), subjects, 121, {"cost": 1500.0}, spread({"cost": 1500.0}, subjects))
    grid = build_grid(spec, catalogue, max_cells=100)
    released = apply_disclosure(spec, RawResult(tuple(cells), total), grid, k=10, round_to=5)
    return to_proto(spec, released, INFO)


def test_result_carries_grid_values_and_metadata(catalogue: Catalogue) -> None:
    """The result lists every grid cell in order, withheld ones as (withheld, 0), and the metadata."""
    spec = validate_request(request(), catalogue)
    result = answer(
        spec, catalogue, RawCell(("2023-Q4", "F"), 4, 9, {"cost": 77.0}, spread({"cost": 77.0}, 4))
    )
    assert list(result.group_by) == ["quarter", "sex"]
    assert [(m.kind, m.field) for m in result.measures] == [
        (query_pb2.MEASURE_KIND_RECORDS, ""),
        (query_pb2.MEASURE_KIND_MEAN, "cost"),
    ]
    assert [list(c.key) for c in result.cells] == [
        ["2023-Q4", "F"],
        ["2023-Q4", "M"],
        ["2024-Q1", "F"],
        ["2024-Q1", "M"],
    ]
    withheld = query_pb2.CellValue(withheld=True, value=0.0)
    assert list(result.cells[0].values) == [withheld, withheld]
    # The smallest released cell (2024-Q1/M, 20 subjects) goes with the small one.
    assert list(result.cells[3].values) == [withheld, withheld]
    assert [(v.withheld, v.value) for v in result.cells[1].values] == [(False, 40.0), (False, 10.0)]
    assert list(result.total.key) == []
    assert [(v.withheld, v.value) for v in result.total.values] == [
        (False, 120.0),
        (False, 12.5),
    ]  # 1500 / 120, the released figures
    assert result.disclosure == query_pb2.DisclosureInfo(
        k=10,
        round_to=5,
        cells_withheld=2,
        decision_id="dec-1",
        policy_revision="rev-abc",
        agreement_id="ag-2026-001",
    )


def test_empty_and_small_cells_serialise_identically(catalogue: Catalogue) -> None:
    """On the wire, a cell that held nobody and one that held a few people are the same bytes."""
    spec = validate_request(request(), catalogue)
    small = answer(
        spec, catalogue, RawCell(("2023-Q4", "F"), 4, 9, {"cost": 77.0}, spread({"cost": 77.0}, 4))
    )
    empty = answer(spec, catalogue, None)
    assert [c.SerializeToString() for c in small.cells] == [c.SerializeToString() for c in empty.cells]
    assert len(small.cells) == len(empty.cells) == 4
