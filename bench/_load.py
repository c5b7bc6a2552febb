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

import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench._load_analysts import Analysts, Call
from bench._load_checks import (
    Expected,
    check_audit,
    compare,
    count_records,
    expected_records,
    stored_count,
    stored_records,
)
from bench._load_report import GRACE_S, LoadReport, LoadSettings, Window, print_load
from bench._load_site import AGENCIES, LoadSite, make_site
from bench._pg_cluster import PrivatePostgres

FAULTS = ("none", "database", "gateway", "policy")
CATCH_UP_TIMEOUT_S = 120.0
REPO_ROOT = Path(__file__).resolve().parent.parent
OPA_SIDECAR = REPO_ROOT / "tests" / "policies" / "opa_rest_server.py"


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


__all__ = ["FAULTS", "GRACE_S", "LoadReport", "LoadSettings", "Window", "print_load", "run_load"]
