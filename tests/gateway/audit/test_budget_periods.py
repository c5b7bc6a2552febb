"""Query budget periods: calendar periods in UTC, and the usage the query policy is given."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.audit import QueryBudget, budget_period, query_budgets
from gateway.audit._budget import parse_time, stamp

UTC = dt.UTC


@pytest.mark.parametrize(
    ("period", "at", "since", "until", "label"),
    [
        ("day", "2026-12-05T23:59:59Z", "2026-12-05", "2026-12-06", "2026-12-05"),
        ("week", "2026-12-05T10:00:00Z", "2026-11-30", "2026-12-07", "the week of 2026-11-30"),
        ("week", "2026-11-30T00:00:00Z", "2026-11-30", "2026-12-07", "the week of 2026-11-30"),
        ("week", "2026-12-31T12:00:00Z", "2026-12-28", "2027-01-04", "the week of 2026-12-28"),
        ("month", "2026-12-31T23:59:59Z", "2026-12-01", "2027-01-01", "2026-12"),
        ("month", "2028-02-29T12:00:00Z", "2028-02-01", "2028-03-01", "2028-02"),
        ("month", "2026-01-31T00:00:00Z", "2026-01-01", "2026-02-01", "2026-01"),
        ("year", "2026-07-01T00:00:00Z", "2026-01-01", "2027-01-01", "2026"),
    ],
)
def test_a_period_is_the_calendar_period_holding_the_moment(
    period: str, at: str, since: str, until: str, label: str
) -> None:
    """Days, ISO weeks (from Monday), months and years start at UTC midnight; the label and the
    renewal date are what an analyst reads."""
    found = budget_period(period, parse_time(at))  # type: ignore[arg-type]
    assert (found.since, found.until) == (f"{since}T00:00:00.000000Z", f"{until}T00:00:00.000000Z")
    assert found.usage(4) == {"queries_this_period": 4, "period": label, "renews_on": until}


def test_a_moment_with_an_offset_is_placed_by_its_utc_time() -> None:
    """01:30 on 1 January at +02:00 is still 31 December in UTC."""
    found = budget_period("month", parse_time("2027-01-01T01:30:00+02:00"))
    assert found.label == "2026-12"


def test_stamps_sort_as_text_in_time_order() -> None:
    """The audit log compares timestamps as text: the stamp form must sort like the times."""
    moments = [dt.datetime(2026, 12, 31, 23, 59, 59, 999999, UTC), dt.datetime(2027, 1, 1, tzinfo=UTC)]
    assert sorted(stamp(m) for m in moments) == [stamp(m) for m in moments]
    assert stamp(moments[1]) == "2027-01-01T00:00:00.000000Z"


def test_budgets_are_read_from_the_agreements_that_set_one() -> None:
    """Only agreements with a well-formed query_budget get one; anything else is left to the
    policy, which denies a budget it is not given a count for."""
    agreements = {
        "ag-1": {"query_budget": {"queries": 50, "period": "month"}},
        "ag-2": {"title": "no budget"},
        "ag-3": {"query_budget": {"queries": 0, "period": "month"}},
        "ag-4": {"query_budget": {"queries": 5, "period": "fortnight"}},
        "ag-5": {"query_budget": {"queries": True, "period": "day"}},
    }
    assert query_budgets(agreements) == {"ag-1": QueryBudget(50, "month")}
    assert query_budgets(None) == {}
