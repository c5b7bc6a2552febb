"""The gRPC health service follows the database: NOT_SERVING (with an error event in the JSON log
and ``datashare_ready`` 0) within moments of PostgreSQL becoming unreachable or the SQLite file
leaving its path, SERVING again on its own when it comes back. The PostgreSQL outage is a TCP
forwarder the test stops, never the shared server."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from e2e_harness import PG_URL, Running, _Serve, ed_rows, seal
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url
from tcp_proxy import TcpProxy

from gateway._settings import GatewaySettings
from gateway.pki import PkiLayout
from gateway.server import configure_logging
from gateway.store.testing import fresh_postgres_schema

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


SERVICES = ("", "datashare.v1.Ingest", "datashare.v1.Query", "datashare.v1.Audit")


def statuses(stub: health_pb2_grpc.HealthStub) -> set[int]:
    """What the health service says for the whole server and each gateway service."""
    return {int(stub.Check(health_pb2.HealthCheckRequest(service=s), timeout=5).status) for s in SERVICES}


def wait_for(running: Running, status: int, within_s: float = 15.0) -> float:
    """Seconds until every service reports ``status``; fails the test after ``within_s``."""
    stub = health_pb2_grpc.HealthStub(running.channel("health-analyst"))
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        if statuses(stub) == {status}:
            return time.monotonic() - started
        time.sleep(0.05)
    pytest.fail(f"health did not become {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}")


@pytest.fixture
def behind_proxy(pki: PkiLayout) -> Iterator[tuple[Running, TcpProxy]]:
    """A gateway on PostgreSQL reached through a forwarder, probing every 100 ms."""
    configure_logging("info", "json")
    with fresh_postgres_schema(PG_URL, prefix="e2e") as url:
        target = make_url(url)
        with TcpProxy((target.host or "127.0.0.1", target.port or 5432)) as proxy:
            proxied = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
            settings = GatewaySettings.from_file(pki.gateway_config)
            settings = dataclasses.replace(
                settings, observability=dataclasses.replace(settings.observability, health_interval_ms=100)
            )
            with _Serve(settings, proxied, pki) as running:
                yield running, proxy


@pytest.mark.postgres
def test_health_goes_not_serving_when_the_database_is_unreachable_and_recovers(
    behind_proxy: tuple[Running, TcpProxy], capsys: pytest.CaptureFixture[str]
) -> None:
    """Cutting the database link turns every service NOT_SERVING, logs an error event and sets datashare_ready to 0; restoring it turns them SERVING again with no restart."""
    running, proxy = behind_proxy
    registry = running.gateway.shared.metrics.registry
    assert statuses(health_pb2_grpc.HealthStub(running.channel("health-analyst"))) == {SERVING}
    assert registry.get_sample_value("datashare_ready") == 1
    running.ingest("agent:health").PushBatch(seal(running.layout, "health", "ed_visits", ed_rows("D01", 12)))

    proxy.stop()
    took = wait_for(running, NOT_SERVING)
    assert took < 5
    assert registry.get_sample_value("datashare_ready") == 0
    assert registry.get_sample_value("datashare_dependency_up", {"dependency": "database"}) == 0
    assert registry.get_sample_value("datashare_dependency_up", {"dependency": "policy_engine"}) == 1
    with pytest.raises(grpc.RpcError) as err:  # fail closed meanwhile: nothing stored, nothing released
        running.ingest("agent:health").PushBatch(
            seal(running.layout, "health", "ed_visits", ed_rows("D02", 12))
        )
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE

    proxy.start()
    wait_for(running, SERVING)
    assert registry.get_sample_value("datashare_ready") == 1
    assert running.stored_rows("ed_visits") == 12

    events = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    alerts = [e for e in events if e["event"] == "gateway_not_ready"]
    assert alerts
    assert alerts[0]["level"] == "error"
    assert alerts[0]["down"] == ["database"]
    assert any(e["event"] == "gateway_ready_again" for e in events)
    assert not any("postgresql" in json.dumps(e) for e in alerts)  # no connection string


@pytest.fixture
def on_sqlite_file(pki: PkiLayout, tmp_path: Path) -> Iterator[tuple[Running, Path]]:
    """A gateway on a SQLite file, probing every 100 ms."""
    settings = GatewaySettings.from_file(pki.gateway_config)
    settings = dataclasses.replace(
        settings, observability=dataclasses.replace(settings.observability, health_interval_ms=100)
    )
    with _Serve(settings, f"sqlite:///{tmp_path / 'gateway.db'}", pki) as running:
        yield running, tmp_path / "gateway.db"


def test_health_goes_not_serving_when_the_sqlite_file_is_moved_away_and_recovers(
    on_sqlite_file: tuple[Running, Path],
) -> None:
    """A SQLite database file moved from its path (open connections would still answer) turns every service NOT_SERVING; moved back, SERVING again."""
    running, db = on_sqlite_file
    registry = running.gateway.shared.metrics.registry
    wait_for(running, SERVING)
    db.rename(db.with_name("elsewhere.db"))
    try:
        wait_for(running, NOT_SERVING)
        assert registry.get_sample_value("datashare_dependency_up", {"dependency": "database"}) == 0
    finally:
        db.with_name("elsewhere.db").rename(db)
    wait_for(running, SERVING)
    assert registry.get_sample_value("datashare_ready") == 1


def test_health_serves_from_start_on_sqlite(running: Running) -> None:
    """A gateway whose database and policy engine answer reports SERVING for every service and datashare_ready 1 as soon as start() returns."""
    assert statuses(health_pb2_grpc.HealthStub(running.channel("health-analyst"))) == {SERVING}
    assert running.gateway.shared.metrics.registry.get_sample_value("datashare_ready") == 1
