"""Load and fault runs (issue 7 item 3): two agents pushing growing exports and twenty analysts
querying, against two gateway processes on one private PostgreSQL, for a bounded time; with one
fault injected mid-run or none.

Faults: ``database`` (the cluster stopped, fast, and started again after ``outage_s``),
``gateway`` (gateway 1 killed with SIGKILL and started again), ``policy`` (both gateways on
``engine = "opa"``; both OPA-speaking sidecars killed and started again, empty, so the gateways
must push their bundle again). The fault window runs from the fault to the moment the failed part
answers again; analysts' failures are only acceptable in it plus ``GRACE_S``, and only as clean
statuses. After the run the exports are complete, the agents get time to catch up, then the
checks: every record of the exports stored exactly once, the audit chain valid, every answer an
analyst received logged as an allowed query with the same cells.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench._load_analysts import CALL_TIMEOUT_S, Analysts, Call
from bench._load_checks import (
    AuditFindings,
    Expected,
    check_audit,
    compare,
    count_records,
    expected_records,
    stored_count,
    stored_records,
)
from bench._load_site import AGENCIES, LoadSite, make_site
from bench._pg_cluster import PrivatePostgres

FAULTS = ("none", "database", "gateway", "policy")
GRACE_S = 15.0  # after a fault window closes, the service must be back within this
CLEAN_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})  # what a fault may cause
CATCH_UP_TIMEOUT_S = 120.0
REPO_ROOT = Path(__file__).resolve().parent.parent
OPA_SIDECAR = REPO_ROOT / "tests" / "policies" / "opa_rest_server.py"


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
        return Counter(c.code for c in self.calls if not c.expected and c not in self.unexpected)

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


def _inject(fault: str, site: LoadSite, pg: PrivatePostgres, outage_s: float) -> None:
    if fault == "database":
        pg.stop()
        time.sleep(outage_s)
        pg.start()
    elif fault == "gateway":
        site.kill_gateway(1)
        time.sleep(outage_s)
        site.start_gateway(1)
    elif fault == "policy":
        site.kill_sidecar(0)
        site.kill_sidecar(1)
        time.sleep(outage_s)
        site.start_sidecar(0)
        site.start_sidecar(1)


def _later(at: float, action: Callable[[], None], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        time.sleep(max(0.0, at - time.monotonic()))
        try:
            action()
        except BaseException as exc:  # noqa: BLE001 - reported by the run, not lost in a thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def run_load(settings: LoadSettings, root: Path) -> LoadReport:
    """One run in ``root`` (which it fills): start, load, fault, catch up, check, stop."""
    if settings.fault not in FAULTS:
        raise ValueError(f"fault: one of {', '.join(FAULTS)}")
    with PrivatePostgres() as pg:
        site = make_site(
            root,
            pg.url,
            people=settings.people,
            initial=settings.initial,
            batch_size=settings.batch_size,
            opa_script=OPA_SIDECAR if settings.fault == "policy" else None,
        )
        try:
            return _run(settings, site, pg)
        finally:
            site.stop()


def _run(settings: LoadSettings, site: LoadSite, pg: PrivatePostgres) -> LoadReport:
    if site.opa_ports is not None:
        site.start_sidecar(0)
        site.start_sidecar(1)
    site.start_gateway(0)  # one at a time: the first creates the tables
    site.start_gateway(1)
    analysts = Analysts(site.layout, (site.address(0), site.address(1)), settings.analysts)
    errors: list[BaseException] = []
    t0 = time.monotonic()
    site.start_agents()
    analysts.start()
    last_append = _grow(site, settings, t0, errors)
    window: Window | None = None
    fault_thread = None
    if settings.fault != "none":
        at = t0 + settings.fault_at * settings.seconds

        def fault() -> None:
            nonlocal window
            start = time.monotonic() - t0
            _inject(settings.fault, site, pg, settings.outage_s)
            window = Window(start, time.monotonic() - t0)

        fault_thread = _later(at, fault, errors)
    time.sleep(max(0.0, t0 + settings.seconds - time.monotonic()))
    analysts.stop()
    if fault_thread is not None:
        fault_thread.join(timeout=120)
    if errors:
        raise RuntimeError(f"the run itself failed: {errors[0]!r}") from errors[0]
    last_append.join(timeout=settings.seconds)
    appended_at = time.monotonic()
    expected = {e.dataset: e for e in (expected_records(site.agent_configs[a]) for a in AGENCIES)}
    done_at = _catch_up(site.store_url, expected)
    agents_alive = all(agent.alive for agent in site.agents)
    gateway_cpu = sum(child.cpu_s() for child in site.gateways if child is not None)
    exits = {agency: agent.terminate() for agency, agent in zip(AGENCIES, site.agents, strict=True)}
    answers = [c.answer for c in analysts.calls if c.answer is not None]
    stored = {name: stored_records(site.store_url, want) for name, want in expected.items()}
    return LoadReport(
        settings=settings,
        calls=analysts.calls,
        t0=t0,
        window=window,
        expected={name: want.count for name, want in expected.items()},
        stored={name: count_records(have) for name, have in stored.items()},
        record_problems=compare(expected, stored),
        push_seconds=(done_at or time.monotonic()) - t0,
        catch_up_s=max(0.0, (done_at or time.monotonic()) - appended_at),
        audit=check_audit(site.layout.root, site.address(0), answers),
        agent_exits=exits,
        agents_alive=agents_alive,
        gateway_cpu_s=gateway_cpu,
        tracebacks=site.tracebacks(),
        recovered_s=_recovery(analysts.calls, t0, window),
    )


def _grow(site: LoadSite, settings: LoadSettings, t0: float, errors: list[BaseException]) -> threading.Thread:
    """Append to the exports every half second until they are whole, by ``grow_for`` of the run."""
    steps = max(1, round(settings.grow_for * settings.seconds / 0.5))
    share = (1 - settings.initial) / steps

    def grow() -> None:
        step = 0
        while not site.grown:
            step += 1
            time.sleep(max(0.0, t0 + step * 0.5 - time.monotonic()))
            site.grow(share)

    return _later(t0, grow, errors)


def _catch_up(url: str, expected: dict[str, Expected]) -> float | None:
    """When the store first held every expected record (None: not within the timeout)."""
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    while time.monotonic() < deadline:
        if all(stored_count(url, name) >= want.count for name, want in expected.items()):
            return time.monotonic()
        time.sleep(0.25)
    return None


def _recovery(calls: list[Call], t0: float, window: Window | None) -> dict[int, float | None]:
    """Per gateway: seconds from the end of the fault window to the first answer begun after it."""
    if window is None:
        return {}
    recovered: dict[int, float | None] = {}
    for gateway in (0, 1):
        after = [
            c.finished - t0 - window.end
            for c in calls
            if c.gateway == gateway and c.code == "OK" and c.started - t0 >= window.end
        ]
        recovered[gateway] = round(min(after), 2) if after else None
    return recovered


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


__all__ = ["CALL_TIMEOUT_S", "FAULTS", "LoadReport", "LoadSettings", "print_load", "run_load"]
