"""Aggregate answers over the wire: thresholds on distinct people, complementary withholding, rounding."""

from __future__ import annotations

import grpc
import pytest
from e2e_harness import Running, ed_rows, seal

from agents._pb import query_pb2

SUBJECTS = query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUBJECTS)
RECORDS = query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_RECORDS)


def _by_district(running: Running, districts: list[str]) -> dict[str, list[query_pb2.CellValue]]:
    result = running.query("health-analyst").Aggregate(
        query_pb2.AggregateRequest(
            agreement_id="ag-2026-001",
            purpose="overdose-prevention",
            dataset="ed_visits",
            measures=[SUBJECTS, RECORDS],
            group_by=["district"],
            filters=[query_pb2.ValueFilter(dimension="district", values=districts)],
        )
    )
    cells = {cell.key[0]: list(cell.values) for cell in result.cells}
    cells["TOTAL"] = list(result.total.values)
    return cells


def _push(running: Running, *batches: list) -> None:  # type: ignore[type-arg]
    stub = running.ingest("agent:health")
    for rows in batches:
        stub.PushBatch(seal(running.layout, "health", "ed_visits", rows))


def test_cell_of_nine_people_with_thirty_records_is_withheld(running: Running) -> None:
    """Nine distinct people with thirty visits between them is under k = 10: every value of the cell is withheld."""
    _push(
        running,
        ed_rows("D01", 9, visits_each=30 // 9 + 1)[:30] + ed_rows("D01", 9)[:0],
        ed_rows("D02", 12),
        ed_rows("D03", 15),
    )
    cells = _by_district(running, ["D01", "D02", "D03"])
    assert all(v.withheld and v.value == 0 for v in cells["D01"])


def test_one_small_cell_under_a_released_total_takes_a_second_cell_with_it(running: Running) -> None:
    """With a released total, a lone small cell could be recovered by subtraction, so the next smallest cell is withheld too."""
    _push(running, ed_rows("D01", 9, visits_each=3), ed_rows("D02", 12), ed_rows("D03", 15))
    cells = _by_district(running, ["D01", "D02", "D03"])
    assert [v.withheld for v in cells["D01"]] == [True, True]
    assert [v.withheld for v in cells["D02"]] == [True, True]
    assert [(v.withheld, v.value) for v in cells["D03"]] == [(False, 15), (False, 15)]
    # 36 people and 54 visits, each rounded to the nearest 5
    assert [(v.withheld, v.value) for v in cells["TOTAL"]] == [(False, 35), (False, 55)]


def test_every_requested_cell_is_returned_whatever_was_withheld(running: Running) -> None:
    """An empty district and a small one come back alike: present, withheld, no value."""
    _push(running, ed_rows("D01", 3), ed_rows("D03", 40))
    cells = _by_district(running, ["D01", "D02", "D03", "D04"])
    assert set(cells) == {"D01", "D02", "D03", "D04", "TOTAL"}
    assert cells["D01"] == cells["D02"]
    assert all(v.withheld for v in cells["D01"] + cells["D04"])


def test_refusal_names_the_reason_and_carries_no_count(running: Running) -> None:
    """A query the agreement does not allow is refused with the policy's reason, and the message holds no figure."""
    _push(running, ed_rows("D01", 23))
    with pytest.raises(grpc.RpcError) as err:
        running.query("health-analyst").Aggregate(
            query_pb2.AggregateRequest(
                agreement_id="ag-2026-001",
                purpose="overdose-prevention",
                dataset="ed_visits",
                measures=[SUBJECTS],
                group_by=["presentation"],
            )
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "presentation" in err.value.details()
    assert "23" not in err.value.details()


def test_invalid_request_names_the_field(running: Running) -> None:
    """A malformed request is INVALID_ARGUMENT with the field path at fault."""
    with pytest.raises(grpc.RpcError) as err:
        running.query("health-analyst").Aggregate(
            query_pb2.AggregateRequest(
                agreement_id="ag-2026-001",
                purpose="overdose-prevention",
                dataset="ed_visits",
                measures=[SUBJECTS],
                group_by=["month"],
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("months")


def test_link_counts_only_people_also_known_to_police_in_the_window(running: Running) -> None:
    """Linking to police incidents within 30 days before keeps exactly the people with such an incident."""
    from e2e_harness import Row, day

    ed = ed_rows("D05", 30, month="2025-03", prefix="p")  # visits on 2025-03-01
    police = [
        Row(
            f"pD05-{i}",
            day("2025-02-10"),
            {"district": "D05", "age_band": "25-34", "sex": "F", "incident_type": "drugs"},
        )
        for i in range(20)  # 20 of the 30 have an incident 19 days before
    ] + [
        Row(
            f"pD05-{i}",
            day("2024-12-01"),
            {"district": "D05", "age_band": "25-34", "sex": "F", "incident_type": "drugs"},
        )
        for i in range(20, 30)  # the other 10 only long before the window
    ]
    running.ingest("agent:health").PushBatch(seal(running.layout, "health", "ed_visits", ed))
    running.ingest("agent:metro-police").PushBatch(
        seal(running.layout, "metro-police", "police_incidents", police)
    )
    result = running.query("health-analyst").Aggregate(
        query_pb2.AggregateRequest(
            agreement_id="ag-2026-001",
            purpose="overdose-prevention",
            dataset="ed_visits",
            measures=[SUBJECTS],
            link=query_pb2.Link(dataset="police_incidents", days_before=30),
        )
    )
    assert (result.total.values[0].withheld, result.total.values[0].value) == (False, 20)
