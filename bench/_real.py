"""The real path: the gateway in this process (mTLS, policy, HPKE, signatures, audit) and the
real agent as a child process pushing the synthetic ED-visits export to it."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench._workspace import Workspace
from gateway._settings import GatewaySettings
from gateway.server import build_gateway
from gateway.store.testing import fresh_postgres_schema

REPO_ROOT = Path(__file__).resolve().parent.parent
_TIME = Path("/usr/bin/time")
AGENT_TIMEOUT_S = 1800


@dataclass(frozen=True)
class AgentRun:
    seconds: float
    sent: int
    stored_batches: int
    peak_rss_kb: int | None


@contextmanager
def _store_url(backend: str, workdir: Path, pg_url: str, run: int) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{workdir / f'real-{run}.db'}"
        return
    with fresh_postgres_schema(pg_url, prefix="bench_real") as url:
        yield url


def run_agent_push(ws: Workspace, backend: str, pg_url: str, run: int) -> AgentRun:
    """One agent push into a freshly started gateway over a fresh database."""
    base = GatewaySettings.from_file(ws.layout.gateway_config)
    # the agent remembers what it sent; a fresh state makes every run a first push
    shutil.rmtree(ws.layout.root / "state", ignore_errors=True)
    with _store_url(backend, ws.root, pg_url, run) as url:
        settings = dataclasses.replace(
            base,
            listen=ws.listen,
            store=dataclasses.replace(base.store, url=url),
            # per-batch log lines would interleave with the table; warnings still show
            observability=dataclasses.replace(base.observability, log_level="warning"),
        )
        gateway = build_gateway(settings)
        gateway.start()
        try:
            return _push(ws, run)
        finally:
            gateway.stop()


def _push(ws: Workspace, run: int) -> AgentRun:
    command = [sys.executable, "-m", "agents", "push", "--config", str(ws.agent_config), "--json"]
    rss_file = ws.root / f"agent-rss-{run}.txt"
    if _TIME.exists():
        command = [str(_TIME), "-f", "%M", "-o", str(rss_file), *command]
    started = time.perf_counter()
    done = subprocess.run(  # noqa: PLW1510 - the exit code is checked below with the output at hand
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=AGENT_TIMEOUT_S
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise RuntimeError(f"agent push exited with status {done.returncode}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return AgentRun(
        seconds=elapsed,
        sent=int(summary["sent"]),
        stored_batches=int(summary["stored"]),
        peak_rss_kb=_peak_rss(rss_file),
    )


def _peak_rss(rss_file: Path) -> int | None:
    try:
        return int(rss_file.read_text().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None
