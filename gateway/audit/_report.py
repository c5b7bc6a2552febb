"""The auditor's report (issue 6 item 3): what the decision log says, summed up.

Pure functions over audit entries as the auditor's ``ListDecisions`` returns them (the server has
already applied the auditor's scope): decisions per agreement, outcome, principal and action;
denials grouped by reason; suppression rates; query and privacy budget use per period; latency.

Only the entry's own columns and its policy *result* (the obligations: budget and noise terms)
are read. The masked policy input is never looked at, so nothing a caller submitted can reach
the report beyond what the log's columns already name.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from gateway.audit._budget import (
    PERIODS,
    BudgetPeriod,
    Period,
    QueryBudget,
    budget_period,
    parse_time,
    query_budgets,
    stamp,
)
from gateway.audit._types import AuditEntry

NO_REASON = "(no reason recorded)"
_HOUR, _DAY = dt.timedelta(hours=1), dt.timedelta(days=1)


@dataclass(frozen=True)
class Tally:
    allow: int = 0
    deny: int = 0
    error: int = 0

    @property
    def total(self) -> int:
        return self.allow + self.deny + self.error

    def add(self, outcome: str) -> Tally:
        return Tally(
            self.allow + (outcome == "allow"),
            self.deny + (outcome == "deny"),
            self.error + (outcome == "error"),
        )


@dataclass(frozen=True)
class Denial:
    """One reason given for refusals (or errors), and how often."""

    outcome: str  # "deny" or "error"
    reason: str
    count: int
    agreements: tuple[str, ...]  # the agreements named by those entries ("" for none)


@dataclass(frozen=True)
class Suppression:
    """Cells of the allowed queries under one agreement: withheld / (released + withheld)."""

    agreement_id: str
    queries: int
    cells_released: int
    cells_withheld: int

    @property
    def rate(self) -> float | None:
        cells = self.cells_released + self.cells_withheld
        return self.cells_withheld / cells if cells else None


@dataclass(frozen=True)
class BudgetUse:
    """Allowed queries under an agreement in one budget period, against its ``query_budget``
    (``limit`` None: the agreement sets none, and ``period`` is "")."""

    agreement_id: str
    period: str
    used: int
    limit: int | None
    renews_on: str = ""
    partial: bool = False  # the report's --since/--until cut the period: counted only inside it


@dataclass(frozen=True)
class PrivacyUse:
    """Privacy (noise) budget spent under an agreement in one period: each allowed query is one
    release charged ``epsilon``."""

    agreement_id: str
    period: str
    releases: int
    epsilon: float
    budget: float
    renews_on: str = ""
    partial: bool = False

    @property
    def spent(self) -> float:
        return round(self.releases * self.epsilon, 6)


@dataclass(frozen=True)
class Latency:
    action: str  # "" for every decision together
    count: int
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class TimeBucket:
    start: str  # RFC 3339
    label: str
    tally: Tally


@dataclass(frozen=True)
class AuditReport:
    since: str = ""
    until: str = ""
    agreement_id: str = ""
    first: str = ""  # timestamp of the first and last entry seen
    last: str = ""
    outcomes: Tally = field(default_factory=Tally)
    by_agreement: tuple[tuple[str, Tally], ...] = ()
    by_principal: tuple[tuple[str, Tally], ...] = ()
    by_action: tuple[tuple[str, Tally], ...] = ()
    denials: tuple[Denial, ...] = ()
    suppression: tuple[Suppression, ...] = ()
    budgets: tuple[BudgetUse, ...] = ()
    privacy: tuple[PrivacyUse, ...] = ()
    latency: tuple[Latency, ...] = ()
    grain: str = "day"  # of the timeline: "hour", "day" or "month"
    timeline: tuple[TimeBucket, ...] = ()


def build_report(
    entries: Iterable[AuditEntry], *, since: str = "", until: str = "", agreement_id: str = ""
) -> AuditReport:
    """Sum up the entries (in log order); ``since``/``until``/``agreement_id`` are the filters the
    entries were listed with, kept to label the report and to mark budget periods it cuts."""
    rows = list(entries)
    counted = Counter(e.outcome for e in rows)
    outcomes = Tally(counted["allow"], counted["deny"], counted["error"])
    window = (_moment(since), _moment(until))
    return AuditReport(
        since=since,
        until=until,
        agreement_id=agreement_id,
        first=rows[0].timestamp if rows else "",
        last=rows[-1].timestamp if rows else "",
        outcomes=outcomes,
        by_agreement=_tallies(rows, lambda e: e.agreement_id),
        by_principal=_tallies(rows, lambda e: e.principal),
        by_action=_tallies(rows, lambda e: e.action),
        denials=denials(rows),
        suppression=suppression(rows),
        budgets=budget_use(rows, window),
        privacy=privacy_use(rows, window),
        latency=latencies(rows),
        grain=timeline_grain(rows),
        timeline=timeline(rows),
    )


def _moment(text: str) -> dt.datetime | None:
    return parse_time(text) if text else None


def _tallies(rows: Sequence[AuditEntry], key: Any) -> tuple[tuple[str, Tally], ...]:
    """Per key, most decisions first (ties by name, so the order is stable)."""
    counts = Counter((key(e), e.outcome) for e in rows)
    tallies = {
        name: Tally(counts[(name, "allow")], counts[(name, "deny")], counts[(name, "error")])
        for name in {name for name, _ in counts}
    }
    return tuple(sorted(tallies.items(), key=lambda kv: (-kv[1].total, kv[0])))


@functools.lru_cache(maxsize=4096)
def _period_of_day(period: Period, day: dt.date) -> BudgetPeriod:
    """budget_period by calendar day (a log holds many entries a day, and periods are days)."""
    return budget_period(period, dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC))


def _period(period: Period, timestamp: str) -> BudgetPeriod:
    return _period_of_day(period, parse_time(timestamp).date())


def denials(rows: Sequence[AuditEntry]) -> tuple[Denial, ...]:
    """Refused and failed decisions grouped by outcome and reason, most frequent first. An entry
    with several reasons counts once under each."""
    counts: Counter[tuple[str, str]] = Counter()
    agreements: dict[tuple[str, str], set[str]] = defaultdict(set)
    for e in rows:
        if e.outcome == "allow":
            continue
        for reason in dict.fromkeys(e.reasons or (NO_REASON,)):
            counts[(e.outcome, reason)] += 1
            agreements[(e.outcome, reason)].add(e.agreement_id)
    return tuple(
        Denial(outcome, reason, n, tuple(sorted(agreements[(outcome, reason)])))
        for (outcome, reason), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    )


def _allowed_queries(rows: Sequence[AuditEntry]) -> list[AuditEntry]:
    return [e for e in rows if e.action == "query" and e.outcome == "allow" and e.agreement_id]


def suppression(rows: Sequence[AuditEntry]) -> tuple[Suppression, ...]:
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for e in _allowed_queries(rows):
        acc = per[e.agreement_id]
        acc[0] += 1
        acc[1] += e.cells_released
        acc[2] += e.cells_withheld
    return tuple(Suppression(a, q, r, w) for a, (q, r, w) in sorted(per.items()))


def _obligations(entry: AuditEntry) -> Mapping[str, Any]:
    obligations = entry.result.get("obligations") if isinstance(entry.result, Mapping) else None
    return obligations if isinstance(obligations, Mapping) else {}


def _cut(period: BudgetPeriod, window: tuple[dt.datetime | None, dt.datetime | None]) -> bool:
    since, until = window
    return (since is not None and since > period.start) or (until is not None and until < period.end)


def budget_use(
    rows: Sequence[AuditEntry], window: tuple[dt.datetime | None, dt.datetime | None] = (None, None)
) -> tuple[BudgetUse, ...]:
    """Allowed queries per agreement and budget period, as the gateway counts them against the
    agreement's ``query_budget`` (gateway/audit/_budget.py). The budget term is the one in the
    latest allowed decision's obligations; an agreement without one gets a single row of all its
    allowed queries in the report's window."""
    queries = _allowed_queries(rows)
    terms: dict[str, QueryBudget | None] = {}
    for e in queries:  # log order: the latest term wins
        term = _obligations(e).get("budget")
        terms[e.agreement_id] = query_budgets({e.agreement_id: {"query_budget": term}}).get(e.agreement_id)
    used: Counter[tuple[str, BudgetPeriod | None]] = Counter()
    for e in queries:
        budget = terms.get(e.agreement_id)
        used[(e.agreement_id, None if budget is None else _period(budget.period, e.timestamp))] += 1
    out = []
    for (agreement, period), n in sorted(used.items(), key=lambda kv: (kv[0][0], _start(kv[0][1]))):
        if period is None:
            out.append(BudgetUse(agreement, "", n, None))
            continue
        budget = terms[agreement]
        out.append(
            BudgetUse(
                agreement,
                period.label,
                n,
                budget.queries if budget else None,
                period.end.date().isoformat(),
                _cut(period, window),
            )
        )
    return tuple(out)


def _start(period: BudgetPeriod | None) -> str:
    return "" if period is None else period.start.isoformat()


def _noise_term(entry: AuditEntry) -> tuple[float, float, Period] | None:
    term = _obligations(entry).get("noise")
    if not isinstance(term, Mapping):
        return None
    epsilon, budget, period = term.get("epsilon"), term.get("budget"), term.get("period")
    if not (_positive(epsilon) and _positive(budget) and period in PERIODS):
        return None
    return float(epsilon), float(budget), period


def _positive(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def privacy_use(
    rows: Sequence[AuditEntry], window: tuple[dt.datetime | None, dt.datetime | None] = (None, None)
) -> tuple[PrivacyUse, ...]:
    """Privacy budget spent per noisy agreement and period: allowed queries x epsilon, read from
    the noise terms recorded in each allowed decision (agreements without noise are left out)."""
    spent: dict[tuple[str, dt.datetime], list[Any]] = {}
    for e in _allowed_queries(rows):
        term = _noise_term(e)
        if term is None:
            continue
        epsilon, budget, period_name = term
        period = _period(period_name, e.timestamp)
        key = (e.agreement_id, period.start)
        acc = spent.setdefault(key, [0, epsilon, budget, period])
        acc[0] += 1
        acc[1], acc[2] = epsilon, budget  # the latest terms
    return tuple(
        PrivacyUse(
            agreement,
            period.label,
            releases,
            epsilon,
            budget,
            period.end.date().isoformat(),
            _cut(period, window),
        )
        for (agreement, _), (releases, epsilon, budget, period) in sorted(spent.items())
    )


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (a value that occurred, no interpolation); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def latencies(rows: Sequence[AuditEntry]) -> tuple[Latency, ...]:
    """p50 and p99 of the recorded latency: all decisions first, then per action."""
    per: dict[str, list[float]] = defaultdict(list)
    for e in rows:
        per[e.action].append(e.latency_ms)
    every = [e.latency_ms for e in rows]
    out = [Latency("", len(every), percentile(every, 50), percentile(every, 99))] if every else []
    out += [Latency(a, len(v), percentile(v, 50), percentile(v, 99)) for a, v in sorted(per.items())]
    return tuple(out)


def timeline_grain(rows: Sequence[AuditEntry]) -> str:
    """Hours for up to two days of entries, days for up to about three months, else months."""
    if not rows:
        return "day"
    span = parse_time(rows[-1].timestamp) - parse_time(rows[0].timestamp)
    return "hour" if span <= 2 * _DAY else ("day" if span <= 92 * _DAY else "month")


_PREFIX = {"hour": 13, "day": 10, "month": 7}  # of "YYYY-MM-DDTHH:…Z"


def _bucket(timestamp: str, grain: str) -> str:
    """The bucket's start as a prefix of the log's own UTC form (cheaper than a datetime per
    entry: a report may run over a long log); any other offset is converted first."""
    utc = timestamp if timestamp.endswith("Z") else stamp(parse_time(timestamp))
    return utc[: _PREFIX[grain]]


def _bucket_start(prefix: str, grain: str) -> dt.datetime:
    padded = {"hour": prefix + ":00:00", "day": prefix + "T00:00:00", "month": prefix + "-01T00:00:00"}[grain]
    return dt.datetime.fromisoformat(padded).replace(tzinfo=dt.UTC)


def _next(moment: dt.datetime, grain: str) -> dt.datetime:
    if grain == "hour":
        return moment + _HOUR
    if grain == "day":
        return moment + _DAY
    return (moment + dt.timedelta(days=32)).replace(day=1)


def _label(moment: dt.datetime, grain: str) -> str:
    return moment.strftime({"hour": "%Y-%m-%d %H:00", "day": "%Y-%m-%d", "month": "%Y-%m"}[grain])


def timeline(rows: Sequence[AuditEntry]) -> tuple[TimeBucket, ...]:
    """Decisions per hour, day or month (see timeline_grain) by outcome, empty buckets included
    so that the chart's x axis is time."""
    if not rows:
        return ()
    grain = timeline_grain(rows)
    counts = Counter((_bucket(e.timestamp, grain), e.outcome) for e in rows)
    buckets = {prefix for prefix, _ in counts}
    out = []
    moment, last = _bucket_start(min(buckets), grain), _bucket_start(max(buckets), grain)
    while moment <= last:
        key = stamp(moment)[: _PREFIX[grain]]
        tally = Tally(counts[(key, "allow")], counts[(key, "deny")], counts[(key, "error")])
        out.append(TimeBucket(stamp(moment), _label(moment, grain), tally))
        moment = _next(moment, grain)
    return tuple(out)


def report_dict(report: AuditReport) -> dict[str, Any]:
    """The report as plain JSON-ready data (``gateway audit report --json``)."""

    def tally(t: Tally) -> dict[str, int]:
        return {"allow": t.allow, "deny": t.deny, "error": t.error, "total": t.total}

    return {
        "window": {"since": report.since, "until": report.until, "agreement_id": report.agreement_id},
        "first": report.first,
        "last": report.last,
        "outcomes": tally(report.outcomes),
        "by_agreement": [{"agreement_id": k, **tally(t)} for k, t in report.by_agreement],
        "by_principal": [{"principal": k, **tally(t)} for k, t in report.by_principal],
        "by_action": [{"action": k, **tally(t)} for k, t in report.by_action],
        "denials": [
            {"outcome": d.outcome, "reason": d.reason, "count": d.count, "agreements": list(d.agreements)}
            for d in report.denials
        ],
        "suppression": [
            {
                "agreement_id": s.agreement_id,
                "queries": s.queries,
                "cells_released": s.cells_released,
                "cells_withheld": s.cells_withheld,
                "rate": s.rate,
            }
            for s in report.suppression
        ],
        "query_budget": [
            {
                "agreement_id": b.agreement_id,
                "period": b.period,
                "used": b.used,
                "limit": b.limit,
                "renews_on": b.renews_on,
                "partial": b.partial,
            }
            for b in report.budgets
        ],
        "privacy_budget": [
            {
                "agreement_id": p.agreement_id,
                "period": p.period,
                "releases": p.releases,
                "epsilon": p.epsilon,
                "spent": p.spent,
                "budget": p.budget,
                "renews_on": p.renews_on,
                "partial": p.partial,
            }
            for p in report.privacy
        ],
        "latency_ms": [
            {"action": x.action or "all", "count": x.count, "p50": x.p50_ms, "p99": x.p99_ms}
            for x in report.latency
        ],
        "timeline": {
            "grain": report.grain,
            "buckets": [{"start": b.start, "label": b.label, **tally(b.tally)} for b in report.timeline],
        },
    }
