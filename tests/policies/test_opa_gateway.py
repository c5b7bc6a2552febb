"""A whole gateway started with [policy] engine = "opa": it pushes the bundle to the OPA endpoint
at start, answers analysts through it, fails closed, counted, when the server goes away, and its
health service says NOT_SERVING until an OPA answers again (even one restarted empty)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opa_rest_server import OpaRestServer

from agents._pb import ingest_pb2, ingest_pb2_grpc, query_pb2, query_pb2_grpc
from gateway._settings import ClientProfile, GatewaySettings
from gateway._tls import client_channel
from gateway.pki import PkiLayout, init_dev_pki
from gateway.policy import QUERY_RULE, UNAVAILABLE_REASON, load_bundle, shipped_bundle_dir
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
def gateway(
    request: pytest.FixtureRequest, pki: PkiLayout, opa: OpaRestServer, tmp_path: Path
) -> Iterator[Gateway]:
    """Decisions time out after 500 ms; health probes every 2 s, or as the test's parameter says
    ({"timeout_ms": …, "health_interval_ms": …})."""
    terms = {"timeout_ms": 500, "health_interval_ms": 2000, **getattr(request, "param", {})}
    settings = GatewaySettings.from_file(pki.gateway_config)
    settings = dataclasses.replace(
        settings,
        listen="127.0.0.1:0",
        store=dataclasses.replace(settings.store, url=f"sqlite:///{tmp_path / 'gateway.db'}"),
        policy=dataclasses.replace(
            settings.policy, engine="opa", opa_url=opa.url, timeout_ms=terms["timeout_ms"]
        ),
        observability=dataclasses.replace(
            settings.observability, health_interval_ms=terms["health_interval_ms"]
        ),
    )
    gw = build_gateway(settings)
    gw.start()
    try:
        yield gw
    finally:
        gw.stop(grace=0.5)


def analyst_channel(gw: Gateway, pki: PkiLayout) -> grpc.Channel:
    profile = ClientProfile.from_file(pki.client_profile("health-analyst"))
    return client_channel(dataclasses.replace(profile, address=f"127.0.0.1:{gw.port}"))


def analyst(gw: Gateway, pki: PkiLayout) -> query_pb2_grpc.QueryStub:
    return query_pb2_grpc.QueryStub(analyst_channel(gw, pki))


def subjects_by_district() -> query_pb2.AggregateRequest:
    return query_pb2.AggregateRequest(
        agreement_id="ag-2026-001",
        purpose="overdose-prevention",
        dataset="ed_visits",
        measures=[query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUBJECTS)],
        group_by=["district"],
    )


def test_gateway_on_the_opa_engine_answers_an_analyst(
    gateway: Gateway, opa: OpaRestServer, pki: PkiLayout
) -> None:
    """The gateway lists datasets and answers an aggregate query with decisions the OPA endpoint made, under the bundle's revision."""
    stub = analyst(gateway, pki)
    listing = stub.ListDatasets(query_pb2.ListDatasetsRequest())
    assert "ed_visits" in [d.contract.dataset for d in listing.datasets]
    result = stub.Aggregate(subjects_by_district())
    assert (
        result.disclosure.policy_revision
        == load_bundle(shipped_bundle_dir()).revision
        == gateway.shared.policy.revision
    )
    assert QUERY_RULE in opa.decisions
    assert "datashare/listing/datasets" in opa.decisions


def test_gateway_denies_and_counts_when_the_opa_server_is_gone(
    gateway: Gateway, opa: OpaRestServer, pki: PkiLayout
) -> None:
    """With the OPA server stopped, a query is refused with UNAVAILABLE (asking again later may
    succeed) saying the policy engine is unavailable, and the failure is counted."""
    stub = analyst(gateway, pki)
    opa.stop()
    with pytest.raises(grpc.RpcError) as err:
        stub.Aggregate(subjects_by_district())
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert UNAVAILABLE_REASON in (err.value.details() or "")
    registry = gateway.shared.metrics.registry
    assert (
        registry.get_sample_value("datashare_policy_engine_failures_total", {"failure": "unreachable"}) == 1
    )


def _status(gw: Gateway, pki: PkiLayout) -> int:
    stub = health_pb2_grpc.HealthStub(analyst_channel(gw, pki))
    return int(stub.Check(health_pb2.HealthCheckRequest(service="datashare.v1.Query"), timeout=5).status)


def _wait_for(gw: Gateway, pki: PkiLayout, status: int, within_s: float = 15.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if _status(gw, pki) == status:
            return
        time.sleep(0.05)
    pytest.fail(f"health did not become {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}")


# probing often, and patient with an OPA slowed by a busy machine: the outage is a stopped server
@pytest.mark.parametrize("gateway", [{"timeout_ms": 3000, "health_interval_ms": 200}], indirect=True)
def test_health_follows_the_opa_server_down_and_back_after_an_empty_restart(
    gateway: Gateway, opa: OpaRestServer, pki: PkiLayout
) -> None:
    """Stopping the OPA server makes the gateway NOT_SERVING with policy_engine down; an empty OPA started on the same port gets the bundle pushed again and the gateway answers and reports SERVING."""
    registry = gateway.shared.metrics.registry
    _wait_for(gateway, pki, SERVING)
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
        stub = query_pb2_grpc.QueryStub(analyst_channel(gateway, pki))
        listing = stub.ListDatasets(query_pb2.ListDatasetsRequest())
        assert "ed_visits" in [d.contract.dataset for d in listing.datasets]


def test_agent_meets_unavailable_not_a_refusal_while_the_opa_server_is_gone(
    gateway: Gateway, opa: OpaRestServer, pki: PkiLayout
) -> None:
    """With the OPA server stopped, an agent's contract fetch fails closed with UNAVAILABLE (which
    agents retry), not PERMISSION_DENIED (which they take as a refusal for good and stop)."""
    profile = ClientProfile.from_file(pki.client_profile("health-analyst"))
    profile = dataclasses.replace(
        profile,
        address=f"127.0.0.1:{gateway.port}",
        cert=pki.agent_cert("health"),
        key=pki.agent_key("health"),
    )
    stub = ingest_pb2_grpc.IngestStub(client_channel(profile))
    assert stub.GetContract(ingest_pb2.GetContractRequest(dataset="ed_visits")).dataset == "ed_visits"
    opa.stop()
    with pytest.raises(grpc.RpcError) as err:
        stub.GetContract(ingest_pb2.GetContractRequest(dataset="ed_visits"))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert UNAVAILABLE_REASON in (err.value.details() or "")
