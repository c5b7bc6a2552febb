"""Noise per agreement over real mTLS gRPC (SQLite and PostgreSQL), DESIGN §9.6: the same people
give the same noisy answer however the question is worded, so repeating or rewording it
averages nothing away; the privacy budget is charged per answer and, once spent, refuses in
plain words."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from e2e_harness import Row, Running, day, seal, serve_with_terms

from agents._pb import audit_pb2, query_pb2
from gateway.pki import PkiLayout

NOISE = "  noise: {epsilon: 1.0, budget: 3, period: year}\n"  # three answers a year
STAY = "length_of_stay_hours"
MEASURES = [
    query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUBJECTS),
    query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_RECORDS),
    query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUM, field=STAY),
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def noisy(request: pytest.FixtureRequest, pki: PkiLayout, tmp_path: Path) -> Iterator[Running]:
    """A gateway serving the shipped bundle with noise added to its agreement."""
    yield from serve_with_terms(request.param, pki, tmp_path, NOISE)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def noisy_and_budgeted(request: pytest.FixtureRequest, pki: PkiLayout, tmp_path: Path) -> Iterator[Running]:
    """Noise (three answers a year) and a query budget (a hundred a year) on one agreement."""
    yield from serve_with_terms(
        request.param, pki, tmp_path, NOISE + "  query_budget: {queries: 100, period: year}\n"
    )


def _push(running: Running) -> None:
    rows = [
        Row(f"{district}-{i}", day(f"2025-03-{1 + i % 20:02d}"), _dims(district), {STAY: float(1 + i % 9)})
        for district, people in (("D01", 30), ("D02", 25), ("D03", 40))
        for i in range(people)
    ]
    running.ingest("agent:health").PushBatch(seal(running.layout, "health", "ed_visits", rows))


def _dims(district: str) -> dict[str, str]:
    return {"district": district, "age_band": "25-34", "sex": "F", "presentation": "overdose"}


def _ask(running: Running, districts: list[str]) -> dict[str, list[tuple[bool, float]]]:
    result = running.query("health-analyst").Aggregate(
        query_pb2.AggregateRequest(
            agreement_id="ag-2026-001",
            purpose="overdose-prevention",
            dataset="ed_visits",
            measures=MEASURES,
            group_by=["district"],
            filters=[query_pb2.ValueFilter(dimension="district", values=districts)],
        )
    )
    cells = {c.key[0]: [(v.withheld, v.value) for v in c.values] for c in result.cells}
    cells["TOTAL"] = [(v.withheld, v.value) for v in result.total.values]
    return cells


def test_repeating_or_rewording_a_noisy_query_gives_the_same_answer(noisy: Running) -> None:
    """The same question with its value list reordered comes back with the same noisy figures
    for every cell and the total; with an empty district added as well, the same figures for
    every district (its total then differs from the first only by nobody, which the release
    ledger treats like a small difference and withholds). And the figures are noisy: they are
    not all the true ones rounded to 5."""
    _push(noisy)
    first = _ask(noisy, ["D01", "D02", "D03"])
    reordered = _ask(noisy, ["D03", "D01", "D02"])
    padded = _ask(noisy, ["D03", "D04", "D01", "D02"])
    assert reordered == first
    assert {d: padded[d] for d in ("D01", "D02", "D03")} == {d: first[d] for d in ("D01", "D02", "D03")}
    assert all(not withheld for withheld, _ in first["D01"] + first["D03"])
    hours = {n: float(sum(1 + i % 9 for i in range(n))) for n in (25, 30, 40)}
    true = {"D01": [30, 30, hours[30]], "D02": [25, 25, hours[25]], "D03": [40, 40, hours[40]]}
    rounded = {d: [5 * round(v / 5) for v in values] for d, values in true.items()}
    assert {d: [v for _, v in first[d]] for d in true} != rounded


def test_a_spent_privacy_budget_refuses_in_plain_words(noisy: Running) -> None:
    """Three answers a year: the fourth is refused saying the privacy budget is spent and when it
    renews, with no count of people in it; the audit log holds the deny."""
    _push(noisy)
    for _ in range(3):
        _ask(noisy, ["D01", "D02", "D03"])
    with pytest.raises(grpc.RpcError) as refused:
        _ask(noisy, ["D01", "D02", "D03"])
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    details = refused.value.details() or ""
    assert "has spent its privacy budget" in details and "renews on" in details
    assert not any(str(n) in details for n in (25, 30, 40, 95))
    decisions = list(noisy.audit().ListDecisions(audit_pb2.ListDecisionsRequest()))
    assert [d.outcome for d in decisions if d.action == "query"] == ["allow"] * 3 + ["deny"]


def test_racing_queries_cannot_overdraw_a_privacy_budget_beside_a_query_budget(
    noisy_and_budgeted: Running,
) -> None:
    """With a query budget and a privacy budget on one agreement, eight racing queries get
    exactly three answers (the privacy budget), re-checked under the audit lock; the rest are
    refused saying the privacy budget is spent."""
    _push(noisy_and_budgeted)
    outcomes: list[str] = []

    def ask() -> None:
        for _ in range(20):  # UNAVAILABLE: a racing release moved the ledger; a client asks again
            try:
                _ask(noisy_and_budgeted, ["D01", "D02", "D03"])
            except grpc.RpcError as refused:
                if refused.code() == grpc.StatusCode.UNAVAILABLE:
                    continue
                spent = refused.code() == grpc.StatusCode.PERMISSION_DENIED and (
                    "has spent its privacy budget" in (refused.details() or "")
                )
                outcomes.append("refused" if spent else f"failed: {refused.code()}")
                return
            outcomes.append("answered")
            return
        outcomes.append("still unavailable")

    with ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(ask) for _ in range(8)]:
            future.result()
    assert sorted(outcomes) == ["answered"] * 3 + ["refused"] * 5
