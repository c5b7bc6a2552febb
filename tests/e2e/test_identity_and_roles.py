"""Who may call what, decided from the verified peer certificate only, over real mTLS."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from e2e_harness import Running, ed_rows, seal

from agents._pb import ingest_pb2, ingest_pb2_grpc, query_pb2
from gateway._pb import audit_pb2


def _aggregate() -> query_pb2.AggregateRequest:
    return query_pb2.AggregateRequest(
        agreement_id="ag-2026-001",
        purpose="overdose-prevention",
        dataset="ed_visits",
        measures=[query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUBJECTS)],
        group_by=["district"],
    )


def _records(running: Running) -> int:
    return running.stored_rows("ed_visits")


def test_analyst_certificate_cannot_push(running: Running) -> None:
    """A batch pushed with an analyst's certificate is refused with PERMISSION_DENIED and nothing is stored."""
    batch = seal(running.layout, "health", "ed_visits", ed_rows("D01", 20))
    with pytest.raises(grpc.RpcError) as err:
        running.ingest("health-analyst").PushBatch(batch)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert _records(running) == 0


def test_agent_certificate_cannot_query(running: Running) -> None:
    """An agent's certificate may not ask aggregate questions."""
    with pytest.raises(grpc.RpcError) as err:
        running.query("agent:health").Aggregate(_aggregate())
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_analyst_certificate_cannot_read_the_audit_log(running: Running) -> None:
    """Only auditors list decisions; an analyst is refused."""
    with pytest.raises(grpc.RpcError) as err:
        list(running.audit("health-analyst").ListDecisions(audit_pb2.ListDecisionsRequest()))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_call_without_client_certificate_is_refused(running: Running) -> None:
    """A TLS client that presents no certificate never reaches a handler."""
    creds = grpc.ssl_channel_credentials(root_certificates=running.layout.ca_cert.read_bytes())
    channel = grpc.secure_channel(
        running.address, creds, options=[("grpc.ssl_target_name_override", "localhost")]
    )
    stub = ingest_pb2_grpc.IngestStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.GetContract(ingest_pb2.GetContractRequest(dataset="ed_visits"), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_agent_cannot_push_into_another_agencys_dataset(running: Running) -> None:
    """The police agent, signing with its own key, cannot push into the health dataset."""
    batch = seal(running.layout, "metro-police", "ed_visits", ed_rows("D01", 20))
    with pytest.raises(grpc.RpcError) as err:
        running.ingest("agent:metro-police").PushBatch(batch)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert _records(running) == 0


def test_header_naming_another_agency_is_refused(running: Running) -> None:
    """A header claiming another agency than the caller's certificate is refused before anything is opened."""
    batch = seal(running.layout, "health", "ed_visits", ed_rows("D01", 20))
    with pytest.raises(grpc.RpcError) as err:
        running.ingest("agent:metro-police").PushBatch(batch)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "agency" in err.value.details()


def _cert_for(running: Running, uri: str, tmp_path: object) -> tuple[bytes, bytes]:
    ca_key = serialization.load_pem_private_key(running.layout.ca_key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(running.layout.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), pem_key


@pytest.mark.parametrize(
    "uri",
    [
        "spiffe://datashare.local/agency/no-such-agency/analyst/eve",
        "spiffe://other.domain/agency/health/analyst/eve",
        "spiffe://datashare.local/agency/health/superuser/eve",
    ],
)
def test_certificate_naming_no_known_principal_is_unauthenticated(
    running: Running, uri: str, tmp_path: object
) -> None:
    """A CA-signed certificate whose SPIFFE id names an unknown agency, trust domain or role is UNAUTHENTICATED, and audited."""
    cert, key = _cert_for(running, uri, tmp_path)
    creds = grpc.ssl_channel_credentials(running.layout.ca_cert.read_bytes(), key, cert)
    channel = grpc.secure_channel(
        running.address, creds, options=[("grpc.ssl_target_name_override", "localhost")]
    )
    with pytest.raises(grpc.RpcError) as err:
        ingest_pb2_grpc.IngestStub(channel).GetContract(
            ingest_pb2.GetContractRequest(dataset="ed_visits"), timeout=5
        )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    denied = list(running.audit().ListDecisions(audit_pb2.ListDecisionsRequest(principal="unauthenticated")))
    assert denied and all(d.outcome == "deny" for d in denied)
