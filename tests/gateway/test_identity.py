"""The principal, taken only from the peer certificate's single SPIFFE URI SAN (DESIGN §4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.errors import Unauthenticated
from gateway.identity import ROLES, Principal, principal_from_pem, spiffe_uris

TD = "datashare.local"
MEMBERS = frozenset({"metro-police", "health", "oversight"})


def _pem(*names: x509.GeneralName, with_san: bool = True) -> bytes:
    """A self-signed certificate with exactly these SANs (the chain was gRPC's job, not identity's)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test principal")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
    )
    if with_san:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _uri(value: str) -> x509.UniformResourceIdentifier:
    return x509.UniformResourceIdentifier(value)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_is_recognised(role: str) -> None:
    """A certificate with one consortium SPIFFE id yields that agency, role and name."""
    pem = _pem(_uri(f"spiffe://{TD}/agency/health/{role}/someone-1"))
    principal = principal_from_pem(pem, TD, MEMBERS)
    assert (principal.trust_domain, principal.agency, principal.role, principal.name) == (
        TD,
        "health",
        role,
        "someone-1",
    )


def test_spiffe_id_round_trips_and_feeds_the_policy_input() -> None:
    """A parsed principal renders back to the same SPIFFE id, and its policy input carries the parts."""
    uri = f"spiffe://{TD}/agency/metro-police/analyst/police-analyst"
    principal = Principal.parse(uri, TD)
    assert principal.spiffe_id == uri
    assert principal.as_policy_input() == {
        "agency": "metro-police",
        "role": "analyst",
        "name": "police-analyst",
        "id": uri,
    }


def test_dns_names_beside_the_spiffe_id_do_not_matter() -> None:
    """DNS SANs are ignored; only the SPIFFE URI names the principal."""
    pem = _pem(x509.DNSName("host.example"), _uri(f"spiffe://{TD}/agency/oversight/auditor/auditor"))
    assert principal_from_pem(pem, TD, MEMBERS).role == "auditor"


def test_spiffe_uris_lists_only_spiffe_uris() -> None:
    """spiffe_uris keeps spiffe:// URIs and drops other URI SANs."""
    cert = x509.load_pem_x509_certificate(
        _pem(_uri("https://example.org/x"), _uri(f"spiffe://{TD}/agency/health/agent/a"))
    )
    assert spiffe_uris(cert) == [f"spiffe://{TD}/agency/health/agent/a"]


@pytest.mark.parametrize(
    ("pem", "problem"),
    [
        pytest.param(_pem(with_san=False), "exactly one SPIFFE URI SAN", id="no-san-extension"),
        pytest.param(_pem(x509.DNSName("localhost")), "exactly one SPIFFE URI SAN", id="dns-san-only"),
        pytest.param(
            _pem(
                _uri(f"spiffe://{TD}/agency/health/analyst/a"),
                _uri(f"spiffe://{TD}/agency/metro-police/analyst/b"),
            ),
            "exactly one SPIFFE URI SAN",
            id="two-spiffe-sans",
        ),
        pytest.param(
            _pem(_uri("spiffe://other.org/agency/health/analyst/a")),
            "another trust domain",
            id="other-domain",
        ),
        pytest.param(
            _pem(_uri(f"spiffe://{TD}/agency/health/superuser/a")), "unknown role", id="unknown-role"
        ),
        pytest.param(
            _pem(_uri(f"spiffe://{TD}/agency/fire-brigade/analyst/a")),
            "not a consortium member",
            id="unknown-agency",
        ),
        pytest.param(
            _pem(_uri(f"spiffe://{TD}/agency/health/analyst/a/extra")),
            "not a consortium SPIFFE id",
            id="extra-path-segment",
        ),
        pytest.param(
            _pem(_uri(f"spiffe://{TD}/agency/Health/analyst/a")),
            "not a consortium SPIFFE id",
            id="upper-case-agency",
        ),
        pytest.param(
            _pem(_uri(f"spiffe://{TD}/agency/../analyst/a")), "not a consortium SPIFFE id", id="dot-dot"
        ),
        pytest.param(
            _pem(_uri(f"spiffe://{TD}/org/health/analyst/a")), "not a consortium SPIFFE id", id="wrong-shape"
        ),
        pytest.param(b"-----BEGIN CERTIFICATE-----\nnope\n", "not a readable X.509", id="garbage-pem"),
        pytest.param(b"", "not a readable X.509", id="empty"),
    ],
)
def test_unusable_certificates_are_unauthenticated(pem: bytes, problem: str) -> None:
    """A certificate naming no single known consortium principal is refused as UNAUTHENTICATED."""
    with pytest.raises(Unauthenticated, match=problem) as caught:
        principal_from_pem(pem, TD, MEMBERS)
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_refusal_does_not_echo_the_presented_identity() -> None:
    """The error message carries no part of the presented SPIFFE id."""
    pem = _pem(_uri("spiffe://other.org/agency/secret-agency/analyst/secret-name"))
    with pytest.raises(Unauthenticated) as caught:
        principal_from_pem(pem, TD, MEMBERS)
    for part in ("other.org", "secret-agency", "secret-name"):
        assert part not in caught.value.message
