"""With [policy] engine = "opa", the gRPC health service follows the OPA server: NOT_SERVING while
it is gone, SERVING again on its own once an OPA answers at the address again, even one restarted
empty (the probe's undefined answer makes the gateway push its bundle back)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opa_rest_server import OpaRestServer

from agents._pb import query_pb2, query_pb2_grpc
from gateway._settings import ClientProfile, GatewaySettings
from gateway._tls import client_channel
from gateway.pki import PkiLayout, init_dev_pki
from gateway.server import Gateway, build_gateway

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    return init_dev_pki(tmp_path_factory.mktemp("pki"), listen="127.0.0.1:0")


@pytest.fixture
def opa() -> Iterator[OpaRestServer]:
    with OpaRestServer().serve() as server:
        yield server


@pytest.fixture
def gateway(pki: PkiLayout, opa: OpaRestServer, tmp_path: Path) -> Iterator[Gateway]:
    settings = GatewaySettings.from_file(pki.gateway_config)
    settings = dataclasses.replace(
        settings,
        listen="127.0.0.1:0",
        store=dataclasses.replace(settings.store, url=f"sqlite:///{tmp_path / 'gateway.db'}"),
        policy=dataclasses.replace(settings.policy, engine="opa", opa_url=opa.url, timeout_ms=500),
        observability=dataclasses.replace(settings.observability, health_interval_ms=200),
    )
    gw = build_gateway(settings)
    gw.start()
    try:
        yield gw
    finally:
        gw.stop(grace=0.5)


def _channel(gw: Gateway, pki: PkiLayout) -> grpc.Channel:
    profile = ClientProfile.from_file(pki.client_profile("health-analyst"))
    return client_channel(dataclasses.replace(profile, address=f"127.0.0.1:{gw.port}"))


def _status(gw: Gateway, pki: PkiLayout) -> int:
    stub = health_pb2_grpc.HealthStub(_channel(gw, pki))
    return int(stub.Check(health_pb2.HealthCheckRequest(service="datashare.v1.Query"), timeout=5).status)


def _wait_for(gw: Gateway, pki: PkiLayout, status: int, within_s: float = 15.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if _status(gw, pki) == status:
            return
        time.sleep(0.05)
    pytest.fail(f"health did not become {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}")


def test_health_follows_the_opa_server_down_and_back_after_an_empty_restart(
    gateway: Gateway, opa: OpaRestServer, pki: PkiLayout
) -> None:
    """Stopping the OPA server makes the gateway NOT_SERVING with policy_engine down; an empty OPA started on the same port gets the bundle pushed again and the gateway answers and reports SERVING."""
    registry = gateway.shared.metrics.registry
    assert _status(gateway, pki) == SERVING
    port = int(opa.url.rsplit(":", 1)[1])
    opa.stop()
    _wait_for(gateway, pki, NOT_SERVING)
    assert registry.get_sample_value("datashare_dependency_up", {"dependency": "policy_engine"}) == 0
    assert registry.get_sample_value("datashare_dependency_up", {"dependency": "database"}) == 1
    assert registry.get_sample_value("datashare_ready") == 0

    with OpaRestServer(port=port).serve() as restarted:
        assert not restarted.modules
        _wait_for(gateway, pki, SERVING)
        assert restarted.modules  # the gateway pushed its bundle to the new, empty server
        assert registry.get_sample_value("datashare_ready") == 1
        stub = query_pb2_grpc.QueryStub(_channel(gateway, pki))
        listing = stub.ListDatasets(query_pb2.ListDatasetsRequest())
        assert "ed_visits" in [d.contract.dataset for d in listing.datasets]
