"""A whole gateway started with [policy] engine = "opa": it pushes the bundle to the OPA endpoint
at start, answers analysts through it, and fails closed, counted, when the server goes away."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opa_rest_server import OpaRestServer

from agents._pb import ingest_pb2, ingest_pb2_grpc, query_pb2, query_pb2_grpc
from gateway._settings import ClientProfile, GatewaySettings
from gateway._tls import client_channel
from gateway.pki import PkiLayout, init_dev_pki
from gateway.policy import QUERY_RULE, UNAVAILABLE_REASON, load_bundle, shipped_bundle_dir
from gateway.server import Gateway, build_gateway


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
    )
    gw = build_gateway(settings)
    gw.start()
    try:
        yield gw
    finally:
        gw.stop(grace=0.5)


def analyst(gw: Gateway, pki: PkiLayout) -> query_pb2_grpc.QueryStub:
    profile = ClientProfile.from_file(pki.client_profile("health-analyst"))
    return query_pb2_grpc.QueryStub(
        client_channel(dataclasses.replace(profile, address=f"127.0.0.1:{gw.port}"))
    )


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
