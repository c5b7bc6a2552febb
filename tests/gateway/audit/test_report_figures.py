"""The auditor's report as pure functions over audit entries (gateway/audit/_report.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.audit import AuditEntry, Tally, build_report, report_dict
from gateway.audit._budget import parse_time
from gateway.audit._report import (
    budget_use,
    denials,
    latencies,
    percentile,
    privacy_use,
    suppression,
    timeline,
)

AG = "ag-2026-001"
BUDGET = {"obligations": {"budget": {"queries": 5, "period": "month"}, "noise": None}}
NOISY = {"obligations": {"budget": None, "noise": {"epsilon": 0.5, "budget": 4, "period": "year"}}}


def entry(
    ts: str = "2026-11-10T12:00:00.000000Z",
    *,
    outcome: str = "allow",
    action: str = "query",
    agreement: str = AG,
    principal: str = "spiffe://datashare.local/agency/health/analyst/a",
    reasons: tuple[str, ...] = (),
    released: int = 0,
    withheld: int = 0,
    latency: float = 1.0,
    result: dict[str, Any] | None = None,
    input_doc: dict[str, Any] | None = None,
) -> AuditEntry:
    return AuditEntry(
        decision_id="d",
        timestamp=ts,
        path="datashare/query/decision",
        principal=principal,
        agency="health",
        action=action,
        outcome=outcome,  # type: ignore[arg-type]
        reasons=reasons,
        agreement_id=agreement,
        cells_released=released,
        cells_withheld=withheld,
        latency_ms=latency,
        result=result or {},
        input=input_doc or {},
    )


def test_decisions_are_counted_per_agreement_outcome_principal_and_action() -> None:
    """Each entry counts once under its agreement, principal and action, in its outcome's column."""
    rows = [
        entry(),
        entry(outcome="deny", reasons=("r",)),
        entry(action="ingest", agreement="", principal="p2"),
        entry(outcome="error", agreement="ag-2", principal="p2"),
    ]
    report = build_report(rows)
    assert report.outcomes == Tally(allow=2, deny=1, error=1)
    assert dict(report.by_agreement) == {AG: Tally(1, 1, 0), "": Tally(1, 0, 0), "ag-2": Tally(0, 0, 1)}
    assert dict(report.by_principal)["p2"] == Tally(1, 0, 1)
    assert dict(report.by_action) == {"query": Tally(1, 1, 1), "ingest": Tally(1, 0, 0)}
    assert report.by_agreement[0][0] == AG  # most decisions first


def test_denials_are_grouped_by_reason_and_counted_most_frequent_first() -> None:
    """Refusals with the same reason are one row with their count; an entry's every reason counts
    once; allowed entries are not denials; errors are kept apart from refusals."""
    rows = [
        entry(outcome="deny", reasons=("over budget",)),
        entry(outcome="deny", reasons=("over budget", "bad dimension"), agreement="ag-2"),
        entry(outcome="deny", reasons=("over budget", "over budget")),
        entry(outcome="error", reasons=("over budget",)),
        entry(outcome="deny"),
        entry(reasons=("ignored: allowed",)),
    ]
    got = [(d.outcome, d.reason, d.count, d.agreements) for d in denials(rows)]
    assert got == [
        ("deny", "over budget", 3, ("ag-2", AG)),  # sorted by id
        ("deny", "(no reason recorded)", 1, (AG,)),
        ("deny", "bad dimension", 1, ("ag-2",)),
        ("error", "over budget", 1, (AG,)),
    ]


def test_suppression_rate_is_withheld_over_all_cells_of_answered_queries() -> None:
    """Rate = cells withheld / (released + withheld) over allowed queries only; refused queries
    and other actions do not count; an agreement whose answers had no cells has no rate."""
    rows = [
        entry(released=6, withheld=2),
        entry(released=2, withheld=10),
        entry(outcome="deny", released=0, withheld=50),
        entry(action="ingest", released=100),
        entry(agreement="ag-empty"),
    ]
    by_agreement = {s.agreement_id: s for s in suppression(rows)}
    assert by_agreement[AG].queries == 2
    assert by_agreement[AG].rate == pytest.approx(12 / 20)
    assert by_agreement["ag-empty"].rate is None


def test_query_budget_use_is_counted_per_calendar_period_of_the_agreement() -> None:
    """Allowed queries are counted per the agreement's budget period (month here) against its
    limit, with the period's label and renewal day; refused queries use nothing."""
    rows = [
        entry("2026-11-03T00:00:00.000000Z", result=BUDGET),
        entry("2026-11-30T23:59:59.999999Z", result=BUDGET),
        entry("2026-11-15T00:00:00.000000Z", outcome="deny", result=BUDGET),
        entry("2026-12-01T00:00:00.000000Z", result=BUDGET),
    ]
    got = [(b.period, b.used, b.limit, b.renews_on, b.partial) for b in budget_use(rows)]
    assert got == [("2026-11", 2, 5, "2026-12-01", False), ("2026-12", 1, 5, "2027-01-01", False)]


def test_budget_period_cut_by_the_report_window_is_marked_partial() -> None:
    """A period that starts before --since (or ends after --until) is flagged: its count covers
    only the window, so it may understate what the gateway counted."""
    rows = [entry("2026-11-20T00:00:00.000000Z", result=BUDGET)]
    window = (parse_time("2026-11-15T00:00:00Z"), None)
    assert budget_use(rows, window)[0].partial
    assert not budget_use(rows, (parse_time("2026-11-01T00:00:00Z"), None))[0].partial


def test_agreement_without_a_budget_gets_one_row_without_a_limit() -> None:
    """An agreement that sets no query_budget shows its answered queries, with no limit or period."""
    got = budget_use([entry(result={"obligations": {"budget": None}}), entry()])
    assert [(b.agreement_id, b.period, b.used, b.limit) for b in got] == [(AG, "", 2, None)]


def test_privacy_budget_spent_is_releases_times_epsilon_per_period() -> None:
    """Each answered query under a noisy agreement is charged its epsilon within the noise period;
    agreements without noise are left out."""
    rows = [
        entry(result=NOISY),
        entry(result=NOISY),
        entry(result=BUDGET),
        entry(outcome="deny", result=NOISY),
    ]
    (use,) = privacy_use(rows)
    assert (use.period, use.releases, use.spent, use.budget, use.renews_on) == (
        "2026",
        2,
        1.0,
        4.0,
        "2027-01-01",
    )


def test_latency_percentiles_are_nearest_rank_overall_and_per_action() -> None:
    """p50 and p99 are values that occurred (nearest rank), for all decisions and per action."""
    rows = [entry(latency=float(v)) for v in range(1, 101)] + [entry(action="ingest", latency=500.0)]
    everything, ingest, query = latencies(rows)
    assert (query.action, query.p50_ms, query.p99_ms) == ("query", 50.0, 99.0)
    assert (ingest.count, ingest.p50_ms) == (1, 500.0)
    assert (everything.count, everything.p99_ms) == (101, 100.0)
    assert percentile([], 50) == 0.0


def test_timeline_fills_empty_buckets_and_picks_a_grain_for_the_span() -> None:
    """Hours for a day's entries, days for weeks, months for a longer log; a bucket with nothing
    in it is still drawn (empty), so the chart's axis is time."""
    hours = timeline([entry("2026-11-10T09:05:00Z"), entry("2026-11-10T11:59:00Z", outcome="deny")])
    assert [(b.label, b.tally.total) for b in hours] == [
        ("2026-11-10 09:00", 1),
        ("2026-11-10 10:00", 0),
        ("2026-11-10 11:00", 1),
    ]
    days = timeline([entry("2026-11-01T00:00:00Z"), entry("2026-11-20T00:00:00Z")])
    assert len(days) == 20 and days[0].label == "2026-11-01"
    months = build_report([entry("2026-01-31T00:00:00Z"), entry("2026-12-01T00:00:00Z")])
    assert months.grain == "month"
    assert [b.label for b in months.timeline][:3] == ["2026-01", "2026-02", "2026-03"]
    assert len(months.timeline) == 12


def test_report_never_carries_the_masked_input() -> None:
    """Whatever an entry's policy input holds (filter values, a token that slipped through), the
    report and its JSON do not: only the entry's columns and its policy result are read."""
    secret = "PSEUDONYM-3f9a1c"
    rows = [entry(input_doc={"request": {"filters": {"district": [secret]}}, "token": secret}, result=BUDGET)]
    assert secret not in json.dumps(report_dict(build_report(rows)))


def test_an_empty_log_gives_an_empty_report() -> None:
    """No entries: zero decisions and no rows anywhere, not an error."""
    report = build_report([])
    assert report.outcomes.total == 0 and not report.timeline and not report.latency
    assert report_dict(report)["outcomes"]["total"] == 0


def test_timeline_buckets_are_utc_whatever_offset_a_timestamp_carries() -> None:
    """An entry stamped with an offset lands in the UTC hour it happened in."""
    (bucket,) = timeline([entry("2026-11-10T01:30:00+02:00")])
    assert (bucket.label, bucket.start) == ("2026-11-09 23:00", "2026-11-09T23:00:00.000000Z")
