"""Query budgets: an agreement's ``query_budget {queries, period}`` caps the aggregate queries
allowed under it per calendar period, shared by all its analysts (issue 4).

Use is counted from the audit log itself (allowed ``query`` entries under the agreement whose
timestamp falls in the period), not from a counter of its own: the log is already the one
tamper-evident record of what was released, so the budget cannot drift from it. Periods are
calendar periods in UTC: a day, an ISO week (Monday to Sunday), a month, a year.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

Period = Literal["day", "week", "month", "year"]
PERIODS: tuple[Period, ...] = ("day", "week", "month", "year")


@dataclass(frozen=True)
class QueryBudget:
    queries: int
    period: Period


@dataclass(frozen=True)
class BudgetPeriod:
    """The period a moment falls in: [start, end), and how an analyst reads it."""

    start: dt.datetime
    end: dt.datetime
    label: str  # "2026-12-05", "the week of 2026-11-30", "2026-12", "2026"

    @property
    def since(self) -> str:
        return stamp(self.start)

    @property
    def until(self) -> str:
        return stamp(self.end)

    def usage(self, used: int) -> dict[str, Any]:
        """``input.usage`` of the query policy: the queries already allowed in this period."""
        return {"queries_this_period": used, "period": self.label, "renews_on": self.end.date().isoformat()}


@dataclass(frozen=True)
class Quota:
    """What the audit append re-checks under the chain lock before it records an allowed query."""

    agreement_id: str
    budget: QueryBudget


def stamp(moment: dt.datetime) -> str:
    """A UTC time in the audit log's timestamp form (which sorts as text in time order)."""
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: str) -> dt.datetime:
    """An RFC 3339 time (the policy input's ``now``, an audit timestamp) as an aware UTC time."""
    moment = dt.datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def budget_period(period: Period, at: dt.datetime) -> BudgetPeriod:
    day = at.astimezone(dt.UTC).date()
    if period == "day":
        first, last = day, day + dt.timedelta(days=1)
        label = first.isoformat()
    elif period == "week":
        first = day - dt.timedelta(days=day.weekday())
        last = first + dt.timedelta(days=7)
        label = f"the week of {first.isoformat()}"
    elif period == "month":
        first = day.replace(day=1)
        last = (first + dt.timedelta(days=31)).replace(day=1)
        label = first.strftime("%Y-%m")
    elif period == "year":
        first, last = dt.date(day.year, 1, 1), dt.date(day.year + 1, 1, 1)
        label = str(day.year)
    else:
        raise ValueError(f"budget period: must be one of {', '.join(PERIODS)}")
    return BudgetPeriod(_midnight(first), _midnight(last), label)


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def query_budgets(agreements: Any) -> dict[str, QueryBudget]:
    """The ``query_budget`` of every agreement that sets one (the bundle's schema has checked
    the shape already; anything else is skipped here and refused by the policy)."""
    budgets: dict[str, QueryBudget] = {}
    if not isinstance(agreements, Mapping):
        return budgets
    for agreement_id, agreement in agreements.items():
        term = agreement.get("query_budget") if isinstance(agreement, Mapping) else None
        if not isinstance(term, Mapping):
            continue
        queries, period = term.get("queries"), term.get("period")
        if type(queries) is int and queries >= 1 and period in PERIODS:
            budgets[str(agreement_id)] = QueryBudget(queries, cast(Period, period))
    return budgets


NOTHING_COUNTED = "9999-12-31T23:59:59.999999Z"


def counted_since(agreements: Any, now: dt.datetime) -> str:
    """The start of the earliest open budget period of any agreement (``query_budget`` or
    ``noise``): audit entries from then on still count toward a budget, so a prune keeps them.
    ``NOTHING_COUNTED`` when no agreement has a budget."""
    periods: set[Period] = {b.period for b in query_budgets(agreements).values()}
    if isinstance(agreements, Mapping):
        for agreement in agreements.values():
            noise = agreement.get("noise") if isinstance(agreement, Mapping) else None
            period = noise.get("period") if isinstance(noise, Mapping) else None
            if period in PERIODS:
                periods.add(cast(Period, period))
    starts = [budget_period(p, now).start for p in periods]
    return stamp(min(starts)) if starts else NOTHING_COUNTED
