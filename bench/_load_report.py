"""What a load run found (bench/_load.py runs it): the settings, the fault window, every call,
the checks; how failures are judged; and the table ``bench/run.py load`` prints."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from bench._load_analysts import Call
from bench._load_checks import AuditFindings

GRACE_S = 15.0  # after a fault window closes, the service must be back within this
CLEAN_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})  # what a fault may cause
LEDGER_MOVED = "release ledger:"  # how the gateway's LedgerMoved reason begins


@dataclass(frozen=True)
class LoadSettings:
    fault: str = "none"
    seconds: float = 60.0
    analysts: int = 20
    people: int = 3000  # about 2.9 ED visits and 2.6 police incidents each
    initial: float = 0.3  # share of each export in place when the run starts
    grow_for: float = 0.6  # the rest is appended over this share of the run
    batch_size: int = 200
    fault_at: float = 0.3  # share of the run before the fault
    outage_s: float = 4.0


@dataclass(frozen=True)
class Window:
    start: float  # seconds from the run's start
    end: float

    def covers(self, call: Call, t0: float) -> bool:
        """Whether the call overlapped the window or the grace after it."""
        return call.finished - t0 >= self.start and call.started - t0 <= self.end + GRACE_S


@dataclass
class LoadReport:
    settings: LoadSettings
    calls: list[Call]
    t0: float
    window: Window | None
    expected: dict[str, int]  # records per dataset the exports hold (after the mapper's rejects)
    stored: dict[str, int]
    record_problems: list[str]
    push_seconds: float  # from the start until every record was stored
    catch_up_s: float  # from the last append until every record was stored
    audit: AuditFindings | None
    agent_exits: dict[str, int]
    agents_alive: bool
    gateway_cpu_s: float  # both gateway processes (a killed one's first life not counted)
    tracebacks: list[str]  # child logs with a Python traceback in them
    recovered_s: dict[int, float | None] = field(default_factory=dict)

    @property
    def answered(self) -> list[Call]:
        return [c for c in self.calls if c.code == "OK"]

    def latency_ms(self, q: float) -> float:
        values = sorted(c.seconds * 1000 for c in self.answered)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, round(q * (len(values) - 1)))]

    @property
    def unexpected(self) -> list[Call]:
        """Calls that did not end as expected outside the fault window (and its grace)."""
        return [
            c
            for c in self.calls
            if not c.expected and (self.window is None or not self.window.covers(c, self.t0))
        ]

    @property
    def unclean(self) -> list[Call]:
        """Calls that did not end as expected in the fault window with a status a fault must not cause."""
        return [
            c for c in self.calls if not c.expected and c not in self.unexpected and c.code not in CLEAN_CODES
        ]

    @property
    def during_fault(self) -> Counter[str]:
        """Final statuses of the questions that failed in the fault window (after their retries)."""
        return Counter(c.code for c in self.calls if not c.expected and c not in self.unexpected)

    @property
    def fault_felt(self) -> int:
        """Failed attempts in the fault window, retried or final, not counting the release ledger's
        own 'ask again' (which has nothing to do with the fault): 0 means the fault went unseen."""
        if self.window is None:
            return 0
        window = self.window
        return sum(
            sum(1 for d in c.retried_for if not d.startswith(LEDGER_MOVED)) + (0 if c.expected else 1)
            for c in self.calls
            if window.covers(c, self.t0)
        )

    @property
    def push_rate(self) -> float:
        return sum(self.stored.values()) / self.push_seconds if self.push_seconds else 0.0

    def summary(self) -> dict[str, Any]:
        calls = self.calls
        return {
            "fault": self.settings.fault,
            "seconds": self.settings.seconds,
            "analysts": self.settings.analysts,
            "questions": len(calls),
            "answered": len(self.answered),
            "refused_as_expected": sum(1 for c in calls if c.expected and not c.allowed),
            "retried": sum(c.attempts - 1 for c in calls),
            # why: the gateway's plain reason, cut to its first words (never data)
            "retried_for": dict(Counter(" ".join(d.split()[:4]) for c in calls for d in c.retried_for)),
            "latency_p50_ms": round(self.latency_ms(0.5), 1),
            "latency_p99_ms": round(self.latency_ms(0.99), 1),
            "unexpected": len(self.unexpected),
            "unexpected_codes": dict(Counter(f"{c.code}: {c.detail[:80]}" for c in self.unexpected)),
            "during_fault": dict(self.during_fault),
            "unclean": len(self.unclean),
            "fault_felt": self.fault_felt,
            "fault_window_s": None if self.window is None else round(self.window.end - self.window.start, 1),
            "recovered_s": self.recovered_s,
            "records_expected": self.expected,
            "records_stored": self.stored,
            "record_problems": self.record_problems,
            "push_records_per_s": round(self.push_rate, 1),
            "gateway_cpu_s": round(self.gateway_cpu_s, 1),
            "gateway_cpu_ms_per_question": round(1000 * self.gateway_cpu_s / max(1, len(calls)), 1),
            "catch_up_s": round(self.catch_up_s, 1),
            "audit": None
            if self.audit is None
            else {**asdict(self.audit), "unaudited": len(self.audit.unaudited)},
            "agents_alive": self.agents_alive,
            "tracebacks": self.tracebacks,
            "agent_exits": self.agent_exits,
        }


_COLUMNS = (
    ("fault", "fault", "<9"),
    ("seconds", "s", ">4"),
    ("questions", "asked", ">6"),
    ("answered", "answered", ">8"),
    ("refused_as_expected", "refused", ">7"),
    ("retried", "retries", ">7"),
    ("latency_p50_ms", "p50 ms", ">8"),
    ("latency_p99_ms", "p99 ms", ">8"),
    ("push_records_per_s", "rec/s", ">7"),
    ("unexpected", "unexpected", ">10"),
    ("in_fault", "in fault", ">8"),
    ("back_s", "back s", ">6"),
    ("records_ok", "records", ">7"),
    ("audit_ok", "audit", ">5"),
)


def _row(report: LoadReport) -> dict[str, Any]:
    s = report.summary()
    back = [v for v in report.recovered_s.values() if v is not None]
    audit = report.audit
    s["in_fault"] = sum(report.during_fault.values())
    s["back_s"] = max(back) if back else "-"
    s["records_ok"] = "exact" if not report.record_problems and report.stored == report.expected else "WRONG"
    s["audit_ok"] = "ok" if audit is not None and audit.chain_ok and not audit.unaudited else "BAD"
    return s


def print_load(reports: list[LoadReport], *, as_json: bool) -> None:
    """A table (and each run's full summary as a JSON line), or JSON only."""
    if as_json:
        print(json.dumps([r.summary() for r in reports], indent=2))
        return
    print(" ".join(f"{title:{align}}" for _key, title, align in _COLUMNS))
    for report in reports:
        row = _row(report)
        print(" ".join(f"{row[key]!s:{align}}" for key, _title, align in _COLUMNS))
    for report in reports:
        print(json.dumps(report.summary()))
