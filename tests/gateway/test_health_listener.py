"""[gateway] health_listen: a plaintext listener with the gRPC health service and nothing else, for
probes that cannot present a client certificate (Kubernetes' `grpc:` probe, deploy/k8s)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway._pb import query_pb2, query_pb2_grpc
from gateway._settings import GatewaySettings
from gateway.errors import ConfigError
from gateway.pki import PkiLayout, init_dev_pki
from gateway.server import Gateway, build_gateway, configure_logging


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    return init_dev_pki(tmp_path_factory.mktemp("pki"), listen="127.0.0.1:0")


@pytest.fixture
def gateway(health_listening_gateway: Gateway) -> Gateway:
    return health_listening_gateway


def _health(port: int) -> health_pb2_grpc.HealthStub:
    return health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{port}"))


def test_health_listener_answers_without_tls(gateway: Gateway) -> None:
    """A client without TLS or certificate reads SERVING for the whole server and for the Query service."""
    stub = _health(gateway.health_port)
    for service in ("", "datashare.v1.Query"):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_health_listener_serves_nothing_else(gateway: Gateway) -> None:
    """The Query service is not reachable on the plaintext listener: UNIMPLEMENTED, no data."""
    stub = query_pb2_grpc.QueryStub(grpc.insecure_channel(f"127.0.0.1:{gateway.health_port}"))
    with pytest.raises(grpc.RpcError) as err:
        stub.ListDatasets(query_pb2.ListDatasetsRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_health_listener_reports_shutdown(gateway: Gateway) -> None:
    """Once the gateway starts stopping, the listener reports NOT_SERVING until it closes."""
    stub = _health(gateway.health_port)
    gateway.health.enter_graceful_shutdown()
    reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_health_listener_is_off_by_default(layout: PkiLayout) -> None:
    """Without [gateway] health_listen there is no plaintext listener at all."""
    assert GatewaySettings.from_file(layout.gateway_config, environ={}).health_listen is None


def test_bad_health_listen_names_the_key(layout: PkiLayout, tmp_path: Path) -> None:
    """A health_listen that is not host:port is a ConfigError naming gateway.health_listen."""
    config = tmp_path / "gateway.toml"
    text = layout.gateway_config.read_text()
    config.write_text(text.replace("[gateway]\n", '[gateway]\nhealth_listen = "8081"\n', 1))
    with pytest.raises(ConfigError) as err:
        GatewaySettings.from_file(config, environ={})
    assert "gateway.health_listen" in err.value.message


def test_health_listen_on_a_taken_port_stops_start_up(gateway: Gateway, layout: PkiLayout) -> None:
    """A health_listen that cannot be bound is a ConfigError naming the key, not a gateway without probes."""
    settings = GatewaySettings.from_file(layout.gateway_config, environ={})
    settings = dataclasses.replace(settings, health_listen=f"127.0.0.1:{gateway.health_port}")
    second = build_gateway(settings)
    with pytest.raises(ConfigError) as err:
        second.start()
    second.stop(grace=0)
    assert "gateway.health_listen" in err.value.message


def test_start_up_line_names_the_health_port(capfd: pytest.CaptureFixture[str], layout: PkiLayout) -> None:
    """The gateway_started log line carries health_port when the listener is on, so an operator
    can see where probes should go."""
    settings = GatewaySettings.from_file(
        layout.gateway_config, environ={"DATASHARE_GATEWAY_GATEWAY_HEALTH_LISTEN": "127.0.0.1:0"}
    )
    configure_logging(settings.log_level, settings.log_format)  # as `gateway serve` does
    gateway = build_gateway(settings)
    gateway.start()
    gateway.stop(grace=0)
    started = [json.loads(line) for line in capfd.readouterr().err.splitlines() if "gateway_started" in line]
    assert [line["health_port"] for line in started] == [gateway.health_port]


def _status_within(port: int, wanted: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    stub = _health(port)
    while time.monotonic() < deadline:
        if stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == wanted:
            return True
        time.sleep(0.1)
    return False


def test_health_listener_reports_a_lost_database(gateway: Gateway) -> None:
    """The plaintext listener answers as the mTLS health service does: NOT_SERVING once the SQLite
    file is gone from its path, SERVING again once it is back, without a restart."""
    database = Path(gateway.settings.store_url.removeprefix("sqlite:///"))
    assert database.is_file()
    moved = database.with_name("moved-away.db")
    database.rename(moved)
    try:
        assert _status_within(gateway.health_port, health_pb2.HealthCheckResponse.NOT_SERVING, 20)
    finally:
        moved.rename(database)
    assert _status_within(gateway.health_port, health_pb2.HealthCheckResponse.SERVING, 20)
