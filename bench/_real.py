"""The real path: the gateway in this process (mTLS, policy, HPKE, signatures, audit) and the
real agent as a child process (``python -m agents push``) pushing the synthetic ED-visits export.

The agent's CPU seconds and peak RSS come from the kernel (``os.wait4``); the gateway's CPU
seconds are this process's while the agent ran (nothing else runs here meanwhile). On PostgreSQL
the database server's own CPU is in neither figure.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._child import run_child
from bench._workspace import Workspace
from gateway._settings import GatewaySettings
from gateway.catalogue import Catalogue
from gateway.server import _app, build_gateway
from gateway.store import SqlStore, open_store
from gateway.store.testing import fresh_postgres_schema

REPO_ROOT = Path(__file__).resolve().parent.parent
AGENT_TIMEOUT_S = 1800
_APP_OPENER = "open_store"  # the name gateway/server/_app.py opens its store by


@dataclass(frozen=True)
class AgentRun:
    seconds: float  # wall clock of the agent process: interpreter start-up and CSV parsing included
    sent: int
    stored_batches: int
    agent_cpu_s: float
    gateway_cpu_s: float
    peak_rss_kb: int


@contextmanager
def _store_url(backend: str, workdir: Path, pg_url: str, run: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{workdir / f'real-{run}.db'}"
        return
    with fresh_postgres_schema(pg_url, prefix="bench_real") as url:
        yield url


@contextmanager
def _index_profile(profile: str) -> Iterator[None]:
    """Make build_gateway open its store with ``profile``, whether or not it passes
    ``store.indexes`` through itself (a caller's explicit value wins)."""
    original = getattr(_app, _APP_OPENER)

    def opener(url: str, catalogue: Catalogue, *args: Any, **kwargs: Any) -> SqlStore:
        kwargs.setdefault("indexes", profile)
        return open_store(url, catalogue, *args, **kwargs)

    setattr(_app, _APP_OPENER, opener)
    try:
        yield
    finally:
        setattr(_app, _APP_OPENER, original)


def run_agent_push(ws: Workspace, backend: str, pg_url: str, run: str, *, indexes: str) -> AgentRun:
    """One agent push into a freshly started gateway over a fresh database."""
    base = GatewaySettings.from_file(ws.layout.gateway_config)
    # the agent remembers what it sent; a fresh state makes every run a first push
    shutil.rmtree(ws.layout.root / "state", ignore_errors=True)
    with _store_url(backend, ws.root, pg_url, run) as url:
        settings = dataclasses.replace(
            base,
            listen=ws.listen,
            store=dataclasses.replace(base.store, url=url, indexes=indexes),
            # per-batch log lines would interleave with the table; warnings still show
            observability=dataclasses.replace(base.observability, log_level="warning"),
        )
        with _index_profile(indexes):
            gateway = build_gateway(settings)
        store = gateway.shared.store
        if not isinstance(store, SqlStore) or store.index_profile != indexes:
            raise RuntimeError(f"gateway store: index profile is not {indexes}")
        gateway.start()
        try:
            return _push(ws)
        finally:
            gateway.stop()


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _push(ws: Workspace) -> AgentRun:
    command = [sys.executable, "-m", "agents", "push", "--config", str(ws.agent_config), "--json"]
    before = _cpu_s()
    done = run_child(command, cwd=REPO_ROOT, timeout_s=AGENT_TIMEOUT_S)
    gateway_cpu = _cpu_s() - before
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise RuntimeError(f"agent push exited with status {done.returncode}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return AgentRun(
        seconds=done.wall_s,
        sent=int(summary["sent"]),
        stored_batches=int(summary["stored"]),
        agent_cpu_s=done.cpu_s,
        gateway_cpu_s=gateway_cpu,
        peak_rss_kb=done.peak_rss_kb,
    )
