"""The wire form of a release: an ``AggregateResult`` carrying values, markers and metadata only."""

from __future__ import annotations

from dataclasses import dataclass

from gateway._pb import query_pb2
from gateway.disclosure._release import Released, ReleasedCell
from gateway.query import QuerySpec

_KIND_TO_PROTO = {
    "subjects": query_pb2.MEASURE_KIND_SUBJECTS,
    "records": query_pb2.MEASURE_KIND_RECORDS,
    "sum": query_pb2.MEASURE_KIND_SUM,
    "mean": query_pb2.MEASURE_KIND_MEAN,
}


@dataclass(frozen=True)
class ReleaseInfo:
    """The disclosure metadata sent with a release; never a count of people or records."""

    k: int
    round_to: int
    decision_id: str
    policy_revision: str
    agreement_id: str


def to_proto(spec: QuerySpec, released: Released, info: ReleaseInfo) -> query_pb2.AggregateResult:
    return query_pb2.AggregateResult(
        group_by=spec.group_by,
        measures=[query_pb2.MeasureSpec(kind=_KIND_TO_PROTO[m.kind], field=m.field) for m in spec.measures],
        cells=[_cell(cell) for cell in released.cells],
        total=_cell(released.total),
        disclosure=query_pb2.DisclosureInfo(
            k=info.k,
            round_to=info.round_to,
            cells_withheld=released.cells_withheld,
            decision_id=info.decision_id,
            policy_revision=info.policy_revision,
            agreement_id=info.agreement_id,
        ),
    )


def _cell(cell: ReleasedCell) -> query_pb2.Cell:
    # A withheld value is written as (withheld, 0) whatever the raw figure was: no hint of why.
    return query_pb2.Cell(
        key=cell.key,
        values=[
            query_pb2.CellValue(withheld=True, value=0.0)
            if v.withheld
            else query_pb2.CellValue(withheld=False, value=v.value)
            for v in cell.values
        ],
    )
