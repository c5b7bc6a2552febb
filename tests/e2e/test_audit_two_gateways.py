"""Two gateway processes (real subprocesses, real mutual TLS) on one PostgreSQL schema answer 200
concurrent queries: the audit log they write together is one strictly linear chain."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import sqlalchemy
import sqlalchemy.pool
from e2e_harness import PG_URL, ed_rows, seal, subjects_query

from agents._pb import ingest_pb2_grpc, query_pb2_grpc
from gateway._pb import audit_pb2, audit_pb2_grpc
from gateway._settings import ClientProfile
from gateway._tls import client_channel
from gateway.pki import PkiLayout
from gateway.store.testing import fresh_postgres_schema

REPO = Path(__file__).resolve().parents[2]
QUERIES = 200
CHECKPOINT_EVERY = 25

pytestmark = pytest.mark.postgres


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass
class Process:
    popen: subprocess.Popen[bytes]
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def _start(layout: PkiLayout, url: str, log: Path) -> Process:
    port = _free_port()
    env = {
        **os.environ,
        "DATASHARE_GATEWAY_STORE_URL": url,
        "DATASHARE_GATEWAY_GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "DATASHARE_GATEWAY_AUDIT_CHECKPOINT_EVERY": str(CHECKPOINT_EVERY),
        "DATASHARE_GATEWAY_OBSERVABILITY_METRICS_PORT": "0",
    }
    with log.open("ab") as out:  # the child keeps its own copy
        popen = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(layout.gateway_config)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=out,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise AssertionError(f"the gateway exited: {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return Process(popen, port)
        time.sleep(0.05)
    popen.kill()
    raise AssertionError("the gateway did not start listening")


@pytest.fixture
def two_gateways(pki: PkiLayout, tmp_path: Path) -> Iterator[tuple[str, list[Process]]]:
    with fresh_postgres_schema(PG_URL, prefix="e2e_two") as url:
        processes: list[Process] = []
        try:
            # one after the other: both create_schema on start, under the schema lock
            processes.append(_start(pki, url, tmp_path / "gateway-a.log"))
            processes.append(_start(pki, url, tmp_path / "gateway-b.log"))
            yield url, processes
        finally:
            for process in processes:
                process.popen.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.popen.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.popen.kill()
                    process.popen.wait()


def _channel(layout: PkiLayout, name: str, address: str) -> grpc.Channel:
    profile = ClientProfile.from_file(layout.client_profile("health-analyst"))
    if name.startswith("agent:"):
        agency = name.split(":", 1)[1]
        profile = dataclasses.replace(profile, cert=layout.agent_cert(agency), key=layout.agent_key(agency))
    else:
        profile = ClientProfile.from_file(layout.client_profile(name))
    return client_channel(dataclasses.replace(profile, address=address))


def test_two_gateway_processes_on_one_postgres_build_one_linear_chain(
    pki: PkiLayout, two_gateways: tuple[str, list[Process]]
) -> None:
    """200 concurrent queries spread over two gateway processes: every one answered and audited,
    seq runs 1..N without gap or fork, verify (chain and signed checkpoints) holds."""
    url, (a, b) = two_gateways
    ingest = ingest_pb2_grpc.IngestStub(_channel(pki, "agent:health", a.address))
    ingest.PushBatch(seal(pki, "health", "ed_visits", ed_rows("D01", 40)))
    stubs = [query_pb2_grpc.QueryStub(_channel(pki, "health-analyst", p.address)) for p in (a, b)]

    def ask(i: int) -> int:
        # two answers racing to the release ledger: the later is told to ask again (UNAVAILABLE)
        for _ in range(50):
            try:
                result = stubs[i % 2].Aggregate(subjects_query(group_by=["district"]), timeout=120)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or "ask again" not in (exc.details() or ""):
                    raise
                continue
            return len(result.cells)
        raise AssertionError("a query was never answered")

    with ThreadPoolExecutor(16) as pool:
        answered = list(pool.map(ask, range(QUERIES)))
    assert len(answered) == QUERIES and all(n > 0 for n in answered)

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            seqs = [
                int(s)
                for s in conn.execute(sqlalchemy.text("SELECT seq FROM audit_log ORDER BY seq")).scalars()
            ]
            links = conn.execute(
                sqlalchemy.text("SELECT count(DISTINCT prev_hash), count(DISTINCT hash) FROM audit_log")
            ).one()
            queries = conn.execute(
                sqlalchemy.text("SELECT count(*) FROM audit_log WHERE action = 'query' AND outcome = 'allow'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert seqs == list(range(1, len(seqs) + 1))  # no gap, no repeat
    assert tuple(links) == (len(seqs), len(seqs))  # no two entries follow the same one: no fork
    assert queries == QUERIES

    auditor = audit_pb2_grpc.AuditStub(_channel(pki, "auditor", b.address))
    report = auditor.VerifyLog(audit_pb2.VerifyLogRequest(), timeout=120)
    assert report.ok, report.problem
    assert report.entries_checked >= QUERIES + 1
    assert report.checkpoints_checked >= QUERIES // CHECKPOINT_EVERY
    head = auditor.GetHead(audit_pb2.GetHeadRequest(), timeout=60)
    assert head.seq >= report.head_seq and head.kind == "head"
