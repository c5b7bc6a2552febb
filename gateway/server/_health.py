"""Readiness: a background thread probes what every answer depends on, the database and the policy
engine, and keeps the gRPC health service (and the ``datashare_ready`` gauge) saying whether the
gateway can serve.

Fail closed: a probe that raises, or that has not answered within the probe interval (at least
MIN_DEADLINE_S, so that a busy machine is not mistaken for a dead dependency), marks its
dependency down, and the gateway NOT_SERVING for every service; the first round in which every
probe answers in time makes it SERVING again, with no restart. A probe still hanging from an
earlier round is not started again beside itself: it stays down until it returns. Going down is
logged as an error event (the alert), coming back as an info event; neither carries the
exception's text, which for a database can hold a connection string.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy.engine import make_url

from gateway.errors import PolicyEngineError, StoreError
from gateway.policy._engine import INGEST_RULE, PolicyEngine
from gateway.server._metrics import Metrics

log = structlog.get_logger("gateway.health")

FIRST_ROUND_S = 10.0
MIN_DEADLINE_S = 1.0
Check = Callable[[], None]  # returns when the dependency answers; raises when it does not


@dataclass(frozen=True)
class Readiness:
    up: Mapping[str, bool]  # dependency -> answered its last probe in time

    @property
    def ready(self) -> bool:
        return all(self.up.values())


def database_check(ping: Check, url: str) -> Check:
    """The store's ping and, for SQLite, the database file still at its path: pooled connections
    keep answering from a file that was deleted or moved away, while everything written to it
    from then on is lost with the process."""
    parsed = make_url(url)
    path = Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None

    def check() -> None:
        ping()
        if path is not None and not path.is_file():
            raise StoreError("store: the SQLite database file is no longer at its path")

    return check


def policy_check(engine: Callable[[], PolicyEngine]) -> Check:
    """A decision of the serving engine on a probe input that names nobody: any decision, allow
    or deny, shows the engine evaluates; a deny the engine *failed* into (unreachable, timeout,
    unsynchronised, ...) is a failure. Through the engine's own decide, so an OPA engine whose
    server lost our modules starts its resync from here too."""

    def check() -> None:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        probe = {
            "principal": {"agency": "", "role": "", "name": "", "id": ""},
            "action": "get_contract",
            "request": {"dataset": "", "contract_version": 0},
            "now": now,
        }
        decision = engine().decide(INGEST_RULE, probe)
        if decision.error is not None:
            raise PolicyEngineError(f"policy engine probe: {decision.failure or 'engine_error'}")

    return check


class HealthProber:
    """Runs ``checks`` every ``interval_s`` and reports each change of readiness to ``on_change``."""

    def __init__(
        self,
        checks: Mapping[str, Check],
        interval_s: float,
        metrics: Metrics,
        on_change: Callable[[Readiness], None],
    ) -> None:
        self._checks = dict(checks)
        self._interval_s = interval_s
        self._deadline_s = max(interval_s, MIN_DEADLINE_S)
        self._metrics = metrics
        self._on_change = on_change
        self._pool = futures.ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="health")
        self._pending: dict[str, futures.Future[None]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.readiness: Readiness | None = None

    def start(self) -> Readiness:
        """One round now (so the first status is a measured one), then a round every interval.
        The first round may take up to FIRST_ROUND_S: a probe's first call can build what later
        ones reuse (a connection, an embedded engine per thread)."""
        readiness = self.probe(max(self._interval_s, FIRST_ROUND_S))
        self._thread = threading.Thread(target=self._run, name="health-prober", daemon=True)
        self._thread.start()
        return readiness

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval_s + self._deadline_s + 1)  # one round at most
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.probe()

    def probe(self, deadline_s: float | None = None) -> Readiness:
        """One round of every check, each given the interval (or ``deadline_s``) to answer;
        report a change."""
        for name, check in self._checks.items():
            if name not in self._pending:
                self._pending[name] = self._pool.submit(check)
        futures.wait(self._pending.values(), timeout=deadline_s or self._deadline_s)
        up: dict[str, bool] = {}
        for name in self._checks:
            pending = self._pending[name]
            if not pending.done():  # hanging: down, and left to finish before it is asked again
                up[name] = False
                continue
            del self._pending[name]
            up[name] = pending.exception() is None
        for name, ok in up.items():
            self._metrics.dependency_up.labels(dependency=name).set(1 if ok else 0)
        readiness = Readiness(up)
        self._metrics.ready.set(1 if readiness.ready else 0)
        if self.readiness is None or readiness.up != self.readiness.up:
            self._report(readiness)
        self.readiness = readiness
        return readiness

    def _report(self, readiness: Readiness) -> None:
        down = sorted(name for name, ok in readiness.up.items() if not ok)
        if down:
            log.error("gateway_not_ready", down=down)
        elif self.readiness is not None:
            log.info("gateway_ready_again")
        self._on_change(readiness)
