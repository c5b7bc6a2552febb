"""The development PKI (`gateway init`) and the mutual-TLS credentials built from it."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import stat
from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway.errors import ConfigError
from gateway.identity import Principal, principal_from_pem
from gateway.pki import (
    DEV_AGENTS,
    DEV_CLIENTS,
    PkiLayout,
    check_certificate,
    client_channel,
    init_dev_pki,
    server_credentials,
)
from gateway.policy._locate import shipped_bundle_dir
from gateway.settings import ClientProfile, GatewaySettings

TRUST_DOMAIN = "datashare.local"
MEMBERS = frozenset({"metro-police", "health", "oversight"})
EXPECTED_CLIENTS = {
    "health-analyst": Principal(TRUST_DOMAIN, "health", "analyst", "health-analyst"),
    "police-analyst": Principal(TRUST_DOMAIN, "metro-police", "analyst", "police-analyst"),
    "auditor": Principal(TRUST_DOMAIN, "oversight", "auditor", "auditor"),
}
EXPECTED_AGENTS = {
    "metro-police": Principal(TRUST_DOMAIN, "metro-police", "agent", "police-agent-1"),
    "health": Principal(TRUST_DOMAIN, "health", "agent", "ed-agent-1"),
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    return init_dev_pki(tmp_path_factory.mktemp("pki") / "dev")


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _store(pki: PkiLayout) -> Store:
    return Store([_cert(pki.ca_cert)])


def _all_files(pki: PkiLayout) -> list[Path]:
    return [*pki.secret_files(), *pki.public_files()]


def _snapshot(pki: PkiLayout) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in _all_files(pki)}


# --- layout -------------------------------------------------------------------------------------


def test_layout_places_every_file_where_the_brief_says(pki: PkiLayout) -> None:
    """The layout's paths are the documented ones under the root, and every one was written."""
    root = pki.root
    expected = [
        root / "ca/ca.pem",
        root / "ca/ca.key",
        root / "gateway/server.pem",
        root / "gateway/server.key",
        root / "gateway/hpke.key",
        root / "gateway/hpke.pub",
        root / "gateway/audit-signing.key",
        root / "gateway/audit-signing.pub",
        root / "gateway/rest.key",
        root / "agents/linkage.key",
        root / "agents/metro-police/agent.pem",
        root / "agents/metro-police/agent.key",
        root / "agents/metro-police/signing.key",
        root / "agents/metro-police/signing.pub",
        root / "agents/health/agent.pem",
        root / "agents/health/agent.key",
        root / "agents/health/signing.key",
        root / "agents/health/signing.pub",
        root / "gateway.toml",
        *(root / f"clients/{name}.{ext}" for name in DEV_CLIENTS for ext in ("pem", "key", "toml")),
    ]
    assert sorted(_all_files(pki)) == sorted(expected)
    assert all(path.is_file() for path in expected)
    assert pki.signing_key_id("health") == "health-1"
    assert pki.client_profile("auditor") == root / "clients/auditor.toml"


def test_layout_at_resolves_a_relative_root_without_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PkiLayout.at turns a relative root into absolute paths and creates nothing."""
    monkeypatch.chdir(tmp_path)
    layout = PkiLayout.at(Path("somewhere"))
    assert layout.ca_cert == tmp_path / "somewhere/ca/ca.pem"
    assert not (tmp_path / "somewhere").exists()


def test_private_files_are_0600_and_directories_0700(pki: PkiLayout) -> None:
    """Every private key and secret is readable by its owner only, and so is every directory."""
    for path in pki.secret_files():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for directory in pki.directories():
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_certificates_and_public_files_are_not_secret(pki: PkiLayout) -> None:
    """Public files carry no group or world write permission and no private key material."""
    for path in pki.public_files():
        assert stat.S_IMODE(path.stat().st_mode) & 0o022 == 0, path
        assert b"PRIVATE KEY" not in path.read_bytes(), path


# --- certificates -------------------------------------------------------------------------------


def test_ca_is_a_five_year_path_length_zero_signing_ca(pki: PkiLayout) -> None:
    """The CA may sign leaf certificates only, is valid already, and lasts about five years."""
    ca = _cert(pki.ca_cert)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length == 0
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    now = datetime.now(UTC)
    assert ca.not_valid_before_utc < now
    assert timedelta(days=5 * 365 - 1) < ca.not_valid_after_utc - now <= timedelta(days=5 * 366)
    ca.verify_directly_issued_by(ca)
    key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == ca.public_key()


def test_server_certificate_chains_to_the_ca_for_each_of_its_names(pki: PkiLayout) -> None:
    """The gateway certificate verifies as a TLS server for localhost, 127.0.0.1 and gateway.<td>."""
    server = _cert(pki.server_cert)
    names: list[x509.DNSName | x509.IPAddress] = [
        x509.DNSName("localhost"),
        x509.DNSName(f"gateway.{TRUST_DOMAIN}"),
        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
    ]
    for name in names:
        verifier = PolicyBuilder().store(_store(pki)).build_server_verifier(name)
        verifier.verify(server, [])
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert timedelta(days=364) < server.not_valid_after_utc - datetime.now(UTC) <= timedelta(days=366)
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == server.public_key()


def test_server_certificate_does_not_verify_for_another_name(pki: PkiLayout) -> None:
    """A host name the gateway was not issued for is rejected by a verifying client."""
    verifier = PolicyBuilder().store(_store(pki)).build_server_verifier(x509.DNSName("evil.example"))
    with pytest.raises(x509.verification.VerificationError):
        verifier.verify(_cert(pki.server_cert), [])


@pytest.mark.parametrize("name", sorted(DEV_CLIENTS))
def test_client_certificate_names_its_principal(pki: PkiLayout, name: str) -> None:
    """Each analyst/auditor certificate chains to the CA as a TLS client and names the expected principal."""
    cert = _cert(pki.client_cert(name))
    verified = PolicyBuilder().store(_store(pki)).build_client_verifier().verify(cert, [])
    uris = [san for san in verified.subjects or [] if isinstance(san, x509.UniformResourceIdentifier)]
    assert len(uris) == 1
    assert (
        principal_from_pem(pki.client_cert(name).read_bytes(), TRUST_DOMAIN, MEMBERS)
        == (EXPECTED_CLIENTS[name])
    )
    key = serialization.load_pem_private_key(pki.client_key(name).read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == cert.public_key()


@pytest.mark.parametrize("agency", sorted(DEV_AGENTS))
def test_agent_certificate_names_its_agent(pki: PkiLayout, agency: str) -> None:
    """Each agent certificate chains to the CA as a TLS client and names that agency's agent."""
    cert = _cert(pki.agent_cert(agency))
    PolicyBuilder().store(_store(pki)).build_client_verifier().verify(cert, [])
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    principal = principal_from_pem(pki.agent_cert(agency).read_bytes(), TRUST_DOMAIN, MEMBERS)
    assert principal == EXPECTED_AGENTS[agency]


def test_trust_domain_is_written_into_every_identity(tmp_path: Path) -> None:
    """A non-default trust domain appears in the SPIFFE ids and the gateway's DNS name."""
    layout = init_dev_pki(tmp_path / "pki", trust_domain="example.org")
    principal = principal_from_pem(layout.client_cert("auditor").read_bytes(), "example.org", MEMBERS)
    assert principal.spiffe_id == "spiffe://example.org/agency/oversight/auditor/auditor"
    verifier = (
        PolicyBuilder().store(_store(layout)).build_server_verifier(x509.DNSName("gateway.example.org"))
    )
    verifier.verify(_cert(layout.server_cert), [])
    settings = GatewaySettings.from_file(layout.gateway_config, environ={})
    assert settings.trust_domain == "example.org"


# --- keys ---------------------------------------------------------------------------------------


def test_hpke_key_pair_matches(pki: PkiLayout) -> None:
    """hpke.key is an X25519 private key whose public half is hpke.pub."""
    private = serialization.load_pem_private_key(pki.hpke_key.read_bytes(), password=None)
    public = serialization.load_pem_public_key(pki.hpke_pub.read_bytes())
    assert isinstance(private, X25519PrivateKey)
    assert isinstance(public, X25519PublicKey)
    assert private.public_key() == public


@pytest.mark.parametrize("agency", [*sorted(DEV_AGENTS), None])
def test_signing_key_pairs_sign_and_verify(pki: PkiLayout, agency: str | None) -> None:
    """Each Ed25519 signing key (per agency, and the gateway's audit key) verifies with its .pub."""
    key_path = pki.audit_signing_key if agency is None else pki.signing_key(agency)
    pub_path = pki.audit_signing_pub if agency is None else pki.signing_pub(agency)
    private = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    public = serialization.load_pem_public_key(pub_path.read_bytes())
    assert isinstance(private, Ed25519PrivateKey)
    assert isinstance(public, Ed25519PublicKey)
    public.verify(private.sign(b"batch header"), b"batch header")


def test_agencies_get_distinct_signing_keys(pki: PkiLayout) -> None:
    """No two agencies share a signing key, so one cannot sign as the other."""
    pubs = {pki.signing_pub(agency).read_bytes() for agency in DEV_AGENTS}
    assert len(pubs) == len(DEV_AGENTS)


def test_rest_and_linkage_keys_are_distinct_32_byte_hex_secrets(pki: PkiLayout) -> None:
    """K_rest and K_link are each 32 random bytes as hex text, and not the same key."""
    rest = bytes.fromhex(pki.rest_key.read_text())
    link = bytes.fromhex(pki.linkage_key.read_text())
    assert len(rest) == 32
    assert len(link) == 32
    assert rest != link


def test_gateway_config_never_references_agent_secrets(pki: PkiLayout) -> None:
    """gateway.toml names neither the linkage key nor any agent private key or the CA key."""
    text = pki.gateway_config.read_text()
    forbidden = [pki.linkage_key, pki.ca_key, *(pki.signing_key(a) for a in DEV_AGENTS)]
    forbidden += [pki.agent_key(a) for a in DEV_AGENTS]
    for path in forbidden:
        assert str(path) not in text
    assert pki.linkage_key.read_text().strip() not in text


def test_generated_files_feed_settings_and_profiles(pki: PkiLayout) -> None:
    """gateway.toml loads with the defaults init promised; each client profile points at its files."""
    settings = GatewaySettings.from_file(pki.gateway_config, environ={})
    assert settings.store.url == f"sqlite:///{pki.root}/gateway.db"
    assert settings.policy.bundle == shipped_bundle_dir()
    assert settings.listen == "127.0.0.1:50051"
    for name in DEV_CLIENTS:
        profile = ClientProfile.from_file(pki.client_profile(name))
        assert (profile.ca, profile.cert, profile.key) == (
            pki.ca_cert,
            pki.client_cert(name),
            pki.client_key(name),
        )
        assert profile.server_name == f"gateway.{TRUST_DOMAIN}"


def test_wildcard_listen_gives_clients_a_loopback_address(tmp_path: Path) -> None:
    """A gateway listening on 0.0.0.0 gets client profiles that dial 127.0.0.1 on the same port."""
    layout = init_dev_pki(tmp_path / "pki", listen="0.0.0.0:6000")
    assert ClientProfile.from_file(layout.client_profile("auditor")).address == "127.0.0.1:6000"
    assert GatewaySettings.from_file(layout.gateway_config, environ={}).listen == "0.0.0.0:6000"


def test_explicit_store_url_and_bundle_are_written(tmp_path: Path) -> None:
    """store_url and policy_bundle arguments end up in gateway.toml."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    layout = init_dev_pki(tmp_path / "pki", store_url=url, policy_bundle=bundle)
    settings = GatewaySettings.from_file(layout.gateway_config, environ={})
    assert settings.store.url == url
    assert settings.policy.bundle == bundle


# --- overwrite protection -----------------------------------------------------------------------


def test_refuses_to_overwrite_without_force(pki: PkiLayout) -> None:
    """A second init on the same root raises ConfigError naming a file and changes nothing."""
    before = _snapshot(pki)
    with pytest.raises(ConfigError, match=r"ca\.pem: already exists"):
        init_dev_pki(pki.root)
    assert _snapshot(pki) == before


def test_refusal_on_a_single_existing_key_writes_nothing(tmp_path: Path) -> None:
    """One pre-existing key is named in the refusal and no other file is created."""
    layout = PkiLayout.at(tmp_path / "pki")
    layout.clients_dir.mkdir(parents=True)
    layout.client_key("auditor").write_text("mine")
    with pytest.raises(ConfigError) as caught:
        init_dev_pki(layout.root)
    assert str(layout.client_key("auditor")) in caught.value.message
    assert [p for p in _all_files(layout) if p.exists()] == [layout.client_key("auditor")]
    assert layout.client_key("auditor").read_text() == "mine"


def test_force_regenerates_everything_with_private_modes(tmp_path: Path) -> None:
    """With force every file is replaced by fresh material and secrets are 0600 again."""
    layout = init_dev_pki(tmp_path / "pki")
    before = _snapshot(layout)
    layout.rest_key.chmod(0o644)
    init_dev_pki(layout.root, force=True)
    after = _snapshot(layout)
    for path in layout.secret_files():
        assert after[path] != before[path], path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert (
        _cert(layout.ca_cert).serial_number
        != x509.load_pem_x509_certificate(before[layout.ca_cert]).serial_number
    )
    _cert(layout.client_cert("auditor")).verify_directly_issued_by(_cert(layout.ca_cert))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"trust_domain": "Not A Domain"}, "trust_domain"), ({"listen": "no-port"}, "listen")],
)
def test_bad_arguments_are_refused_before_writing(tmp_path: Path, kwargs: dict[str, str], field: str) -> None:
    """An invalid trust domain or listen address is a ConfigError naming it, and nothing is written."""
    with pytest.raises(ConfigError, match=rf"^{field}:"):
        init_dev_pki(tmp_path / "pki", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "pki").exists()


def test_agent_config_hook_runs_after_everything_is_written(tmp_path: Path) -> None:
    """The agent_configs callback receives the layout once every file already exists."""
    seen: list[PkiLayout] = []

    def hook(layout: PkiLayout) -> None:
        assert all(path.is_file() for path in _all_files(layout))
        seen.append(layout)

    layout = init_dev_pki(tmp_path / "pki", agent_configs=hook)
    assert seen == [layout]


# --- certificate checks -------------------------------------------------------------------------


def _self_signed(path: Path, not_before: datetime, not_after: datetime) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_check_certificate_accepts_the_generated_certificates(pki: PkiLayout) -> None:
    """Fresh certificates pass the start-up check."""
    for path in [pki.ca_cert, pki.server_cert, *(pki.client_cert(n) for n in DEV_CLIENTS)]:
        check_certificate(path)


def test_check_certificate_refuses_an_expired_certificate(tmp_path: Path) -> None:
    """An expired certificate is a ConfigError naming the file."""
    now = datetime.now(UTC)
    path = _self_signed(tmp_path / "old.pem", now - timedelta(days=30), now - timedelta(days=1))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: certificate expired"):
        check_certificate(path)


def test_check_certificate_refuses_a_certificate_not_yet_valid(tmp_path: Path) -> None:
    """A certificate whose validity starts in the future is a ConfigError naming the file."""
    now = datetime.now(UTC)
    path = _self_signed(tmp_path / "future.pem", now + timedelta(days=1), now + timedelta(days=30))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: certificate is not valid until"):
        check_certificate(path)


def test_check_certificate_names_the_generated_server_cert_once_a_year_has_passed(pki: PkiLayout) -> None:
    """The gateway certificate is reported expired a year and a day from now."""
    with pytest.raises(ConfigError, match="expired"):
        check_certificate(pki.server_cert, now=datetime.now(UTC) + timedelta(days=367))


@pytest.mark.parametrize(("content", "problem"), [(None, "not found"), (b"garbage", "not a PEM")])
def test_check_certificate_refuses_missing_or_garbage(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    """A missing or unparseable certificate file is a ConfigError naming the file."""
    path = tmp_path / "cert.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: .*{problem}"):
        check_certificate(path)


def test_server_credentials_refuse_an_expired_server_certificate(pki: PkiLayout, tmp_path: Path) -> None:
    """The gateway will not start with an expired TLS certificate."""
    settings = GatewaySettings.from_file(pki.gateway_config, environ={})
    now = datetime.now(UTC)
    expired = _self_signed(tmp_path / "expired.pem", now - timedelta(days=30), now - timedelta(days=1))
    stale = dataclasses.replace(settings, tls=dataclasses.replace(settings.tls, cert=expired))
    with pytest.raises(ConfigError, match="expired"):
        server_credentials(stale)


def test_server_credentials_refuse_a_group_readable_tls_key(pki: PkiLayout, tmp_path: Path) -> None:
    """A TLS private key others may read is refused, naming the setting and the file."""
    settings = GatewaySettings.from_file(pki.gateway_config, environ={})
    loose = tmp_path / "server.key"
    loose.write_bytes(pki.server_key.read_bytes())
    loose.chmod(0o640)
    with pytest.raises(ConfigError, match=rf"tls\.key: {re.escape(str(loose))}: .*group or others"):
        server_credentials(dataclasses.replace(settings, tls=dataclasses.replace(settings.tls, key=loose)))


# --- mutual TLS over a real gRPC server ---------------------------------------------------------


@pytest.fixture(scope="module")
def health_server(pki: PkiLayout) -> Iterator[str]:
    """A gRPC server with the gateway's TLS credentials and the standard health service."""
    settings = GatewaySettings.from_file(pki.gateway_config, environ={})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(settings))
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


def _check(channel: grpc.Channel) -> int:
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
        return int(response.status)


def _profile(pki: PkiLayout, name: str, address: str) -> ClientProfile:
    return dataclasses.replace(ClientProfile.from_file(pki.client_profile(name)), address=address)


@pytest.mark.parametrize("name", sorted(DEV_CLIENTS))
def test_client_with_its_profile_reaches_the_gateway(pki: PkiLayout, health_server: str, name: str) -> None:
    """A principal's generated profile opens a mutual-TLS channel the gateway accepts."""
    status = _check(client_channel(_profile(pki, name, health_server)))
    assert status == health_pb2.HealthCheckResponse.SERVING


def test_client_without_a_certificate_is_refused(pki: PkiLayout, health_server: str) -> None:
    """A client trusting the CA but presenting no certificate gets UNAVAILABLE."""
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca_cert.read_bytes())
    options = [("grpc.ssl_target_name_override", f"gateway.{TRUST_DOMAIN}")]
    with pytest.raises(grpc.RpcError) as caught:
        _check(grpc.secure_channel(health_server, credentials, options=options))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_from_another_ca_is_refused(pki: PkiLayout, health_server: str, tmp_path: Path) -> None:
    """A certificate with a valid-looking SPIFFE id but issued by a different CA gets UNAVAILABLE."""
    stranger = init_dev_pki(tmp_path / "other")
    profile = dataclasses.replace(
        ClientProfile.from_file(stranger.client_profile("health-analyst")),
        address=health_server,
        ca=pki.ca_cert,  # trusts the real gateway, so only the client side is foreign
    )
    with pytest.raises(grpc.RpcError) as caught:
        _check(client_channel(profile))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_refuses_a_gateway_under_the_wrong_name(pki: PkiLayout, health_server: str) -> None:
    """The client checks the gateway's certificate against the profile's server name."""
    profile = dataclasses.replace(_profile(pki, "auditor", health_server), server_name="gateway.elsewhere")
    with pytest.raises(grpc.RpcError) as caught:
        _check(client_channel(profile))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_channel_refuses_a_key_others_may_read(pki: PkiLayout, tmp_path: Path) -> None:
    """A client profile whose private key is world-readable is refused before any connection."""
    loose = tmp_path / "auditor.key"
    loose.write_bytes(pki.client_key("auditor").read_bytes())
    loose.chmod(0o644)
    profile = dataclasses.replace(ClientProfile.from_file(pki.client_profile("auditor")), key=loose)
    with pytest.raises(ConfigError, match=r"^client profile key: .*group or others"):
        client_channel(profile)
