"""The development PKI (`gateway init`, DESIGN §4): one command, so nobody runs openssl by hand.

It makes a consortium CA, the gateway's server certificate, HPKE, audit-signing and re-keying
keys, one agent certificate and signing key per demo agency, the consortium linkage key the
agents share (and the gateway never references), one certificate per demo analyst or auditor,
and the configuration files pointing at all of it. Everything is generated in memory first, so a
refusal or a bad argument writes nothing. Private files are created 0600 and directories 0700.

This is a development PKI: the CA key sits beside the certificates. Production uses a real CA.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway._settings import parse_listen, valid_trust_domain
from gateway.errors import ConfigError

# The demo consortium: each pushing agency's agent, and the principals who query or audit.
DEV_AGENTS: Final[Mapping[str, str]] = MappingProxyType(
    {"metro-police": "police-agent-1", "health": "ed-agent-1"}
)
DEV_CLIENTS: Final[Mapping[str, tuple[str, str]]] = MappingProxyType(
    {
        "health-analyst": ("health", "analyst"),
        "police-analyst": ("metro-police", "analyst"),
        "auditor": ("oversight", "auditor"),
    }
)

CA_VALIDITY: Final = timedelta(days=5 * 365)
LEAF_VALIDITY: Final = timedelta(days=365)
# Clocks on a developer's machines disagree by a little; a certificate must work at once.
BACKDATE: Final = timedelta(minutes=5)
SECRET_BYTES: Final = 32
_ORGANISATION: Final = "DataShare development consortium"


@dataclass(frozen=True)
class PkiLayout:
    """Where every file of a development PKI lives under ``root`` (absolute paths)."""

    root: Path

    @classmethod
    def at(cls, root: Path) -> PkiLayout:
        return cls(Path(root).expanduser().absolute())

    # consortium CA
    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def ca_cert(self) -> Path:
        return self.ca_dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.ca_dir / "ca.key"

    # gateway
    @property
    def gateway_dir(self) -> Path:
        return self.root / "gateway"

    @property
    def server_cert(self) -> Path:
        return self.gateway_dir / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.gateway_dir / "server.key"

    @property
    def hpke_key(self) -> Path:
        return self.gateway_dir / "hpke.key"

    @property
    def hpke_pub(self) -> Path:
        return self.gateway_dir / "hpke.pub"

    @property
    def audit_signing_key(self) -> Path:
        return self.gateway_dir / "audit-signing.key"

    @property
    def audit_signing_pub(self) -> Path:
        return self.gateway_dir / "audit-signing.pub"

    @property
    def rest_key(self) -> Path:
        return self.gateway_dir / "rest.key"

    @property
    def gateway_config(self) -> Path:
        return self.root / "gateway.toml"

    @property
    def database(self) -> Path:
        return self.root / "gateway.db"

    # agents
    @property
    def agents_dir(self) -> Path:
        return self.root / "agents"

    @property
    def linkage_key(self) -> Path:
        return self.agents_dir / "linkage.key"

    def agent_dir(self, agency: str) -> Path:
        return self.agents_dir / agency

    def agent_cert(self, agency: str) -> Path:
        return self.agent_dir(agency) / "agent.pem"

    def agent_key(self, agency: str) -> Path:
        return self.agent_dir(agency) / "agent.key"

    def signing_key(self, agency: str) -> Path:
        return self.agent_dir(agency) / "signing.key"

    def signing_pub(self, agency: str) -> Path:
        return self.agent_dir(agency) / "signing.pub"

    @staticmethod
    def signing_key_id(agency: str) -> str:
        return f"{agency}-1"

    # analysts and auditors
    @property
    def clients_dir(self) -> Path:
        return self.root / "clients"

    def client_cert(self, name: str) -> Path:
        return self.clients_dir / f"{name}.pem"

    def client_key(self, name: str) -> Path:
        return self.clients_dir / f"{name}.key"

    def client_profile(self, name: str) -> Path:
        return self.clients_dir / f"{name}.toml"

    def directories(self) -> tuple[Path, ...]:
        agent_dirs = tuple(self.agent_dir(agency) for agency in DEV_AGENTS)
        return (self.root, self.ca_dir, self.gateway_dir, self.agents_dir, *agent_dirs, self.clients_dir)

    def secret_files(self) -> tuple[Path, ...]:
        """Every private key or secret `init_dev_pki` writes (mode 0600)."""
        per_agent = [
            path for agency in DEV_AGENTS for path in (self.agent_key(agency), self.signing_key(agency))
        ]
        return (
            self.ca_key,
            self.server_key,
            self.hpke_key,
            self.audit_signing_key,
            self.rest_key,
            *per_agent,
            self.linkage_key,
            *(self.client_key(name) for name in DEV_CLIENTS),
        )

    def public_files(self) -> tuple[Path, ...]:
        """Every certificate, public key and configuration file `init_dev_pki` writes."""
        per_agent = [
            path for agency in DEV_AGENTS for path in (self.agent_cert(agency), self.signing_pub(agency))
        ]
        per_client = [
            path for name in DEV_CLIENTS for path in (self.client_cert(name), self.client_profile(name))
        ]
        return (
            self.ca_cert,
            self.server_cert,
            self.hpke_pub,
            self.audit_signing_pub,
            *per_agent,
            *per_client,
            self.gateway_config,
        )


def spiffe_id(trust_domain: str, agency: str, role: str, name: str) -> str:
    return f"spiffe://{trust_domain}/agency/{agency}/{role}/{name}"


def init_dev_pki(
    root: Path,
    *,
    force: bool = False,
    trust_domain: str = "datashare.local",
    listen: str = "127.0.0.1:50051",
    policy_bundle: Path | None = None,
    store_url: str | None = None,
    agent_configs: Callable[[PkiLayout], None] | None = None,
) -> PkiLayout:
    """Write a complete development PKI and its configuration under ``root``.

    Refuses, naming the first file found, to replace any existing file unless ``force``; with
    ``force`` everything is regenerated. ``agent_configs``, when given, is called last with the
    layout, to write the agents' configuration files (the agent package owns their format).
    """
    from gateway.policy._locate import shipped_bundle_dir

    if not valid_trust_domain(trust_domain):
        raise ConfigError("trust_domain: not a valid trust domain name (lower-case letters, digits, . _ -)")
    try:
        listen_host, _ = parse_listen(listen)
    except ValueError as exc:
        raise ConfigError(f"listen: {exc}") from exc
    layout = PkiLayout.at(root)
    bundle = (policy_bundle or shipped_bundle_dir()).expanduser().absolute()
    url = store_url or f"sqlite:///{layout.database}"

    files = _generate(
        layout,
        trust_domain=trust_domain,
        listen=listen,
        listen_host=listen_host,
        bundle=bundle,
        store_url=url,
    )
    if not force:
        for path in files:
            if path.exists() or path.is_symlink():
                raise ConfigError(f"{path}: already exists; pass force to regenerate the development PKI")
    _write_all(layout, files, force=force)
    if agent_configs is not None:
        agent_configs(layout)
    return layout


@dataclass(frozen=True)
class _Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return _private_pem(self.key)


@dataclass(frozen=True)
class _File:
    content: bytes
    secret: bool


def _generate(
    layout: PkiLayout, *, trust_domain: str, listen: str, listen_host: str, bundle: Path, store_url: str
) -> dict[Path, _File]:
    now = datetime.now(UTC)
    files: dict[Path, _File] = {}

    def issued(cert_path: Path, key_path: Path, item: _Issued) -> None:
        files[cert_path] = _File(item.cert_pem(), secret=False)
        files[key_path] = _File(item.key_pem(), secret=True)

    ca = _issue_ca(now)
    issued(layout.ca_cert, layout.ca_key, ca)
    server_name = f"gateway.{trust_domain}"
    issued(layout.server_cert, layout.server_key, _issue_server(ca, server_name, listen_host, now))

    hpke = X25519PrivateKey.generate()
    files[layout.hpke_key] = _File(_private_pem(hpke), secret=True)
    files[layout.hpke_pub] = _File(_public_pem(hpke.public_key()), secret=False)
    audit = Ed25519PrivateKey.generate()
    files[layout.audit_signing_key] = _File(_private_pem(audit), secret=True)
    files[layout.audit_signing_pub] = _File(_public_pem(audit.public_key()), secret=False)
    files[layout.rest_key] = _File(_secret_hex(), secret=True)

    for agency, agent_name in DEV_AGENTS.items():
        uri = spiffe_id(trust_domain, agency, "agent", agent_name)
        issued(layout.agent_cert(agency), layout.agent_key(agency), _issue_client(ca, agent_name, uri, now))
        signing = Ed25519PrivateKey.generate()
        files[layout.signing_key(agency)] = _File(_private_pem(signing), secret=True)
        files[layout.signing_pub(agency)] = _File(_public_pem(signing.public_key()), secret=False)
    files[layout.linkage_key] = _File(_secret_hex(), secret=True)

    client_address = _client_address(listen)
    for name, (agency, role) in DEV_CLIENTS.items():
        uri = spiffe_id(trust_domain, agency, role, name)
        issued(layout.client_cert(name), layout.client_key(name), _issue_client(ca, name, uri, now))
        files[layout.client_profile(name)] = _File(
            _client_profile_toml(layout, name, client_address, server_name), secret=False
        )

    files[layout.gateway_config] = _File(
        _gateway_toml(layout, listen, trust_domain, bundle, store_url), secret=False
    )
    return files


def _write_all(layout: PkiLayout, files: Mapping[Path, _File], *, force: bool) -> None:
    for directory in layout.directories():
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{directory}: cannot create directory ({exc.strerror})") from exc
    written: list[Path] = []
    try:
        for path, file in files.items():
            if force:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            _write_new(path, file)
            written.append(path)
    except FileExistsError as exc:
        _remove(written)
        raise ConfigError(f"{exc.filename}: already exists; pass force to regenerate") from exc
    except OSError as exc:
        _remove(written)
        raise ConfigError(f"{exc.filename or layout.root}: cannot write ({exc.strerror})") from exc


def _write_new(path: Path, file: _File) -> None:
    # The mode is set at creation, so a secret is never readable by others even for an instant;
    # O_EXCL makes a file appearing since the existence check an error rather than a clobber.
    mode = 0o600 if file.secret else 0o644
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(file.content)


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


def _secret_hex() -> bytes:
    return (secrets.token_bytes(SECRET_BYTES).hex() + "\n").encode("ascii")


def _private_pem(key: ec.EllipticCurvePrivateKey | X25519PrivateKey | Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _public_pem(key: X25519PublicKey | Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        ]
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, now: datetime, validity: timedelta
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _issue_ca(now: datetime) -> _Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("DataShare development CA")
    cert = (
        _builder(name, name, key, now, CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return _Issued(cert, key)


def _issue_leaf(
    ca: _Issued, common_name: str, names: list[x509.GeneralName], usage: x509.ObjectIdentifier, now: datetime
) -> _Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        _builder(_name(common_name), ca.cert.subject, key, now, LEAF_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return _Issued(cert, key)


def _issue_server(ca: _Issued, server_name: str, listen_host: str, now: datetime) -> _Issued:
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName(server_name),
        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
    ]
    # A gateway told to listen on a particular address should also be reachable by that name.
    try:
        address = ipaddress.ip_address(listen_host)
    except ValueError:
        if listen_host.lower() not in {"localhost", server_name}:
            names.append(x509.DNSName(listen_host.lower()))
    else:
        if not address.is_unspecified and address != ipaddress.IPv4Address("127.0.0.1"):
            names.append(x509.IPAddress(address))
    return _issue_leaf(ca, "DataShare gateway", names, ExtendedKeyUsageOID.SERVER_AUTH, now)


def _issue_client(ca: _Issued, name: str, uri: str, now: datetime) -> _Issued:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri)]
    return _issue_leaf(ca, name, names, ExtendedKeyUsageOID.CLIENT_AUTH, now)


def _client_address(listen: str) -> str:
    host, port = parse_listen(listen)
    try:
        unspecified = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        unspecified = False
    if unspecified:
        return f"127.0.0.1:{port}"
    return listen


def _toml_string(value: str) -> str:
    escaped = []
    for char in value:
        if char in {'"', "\\"}:
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def _lines(pairs: Mapping[str, str | int]) -> Iterator[str]:
    for key, value in pairs.items():
        yield f"{key} = {value}" if isinstance(value, int) else f"{key} = {_toml_string(value)}"


def _gateway_toml(layout: PkiLayout, listen: str, trust_domain: str, bundle: Path, store_url: str) -> bytes:
    sections: list[tuple[str, Mapping[str, str | int]]] = [
        ("gateway", {"listen": listen, "trust_domain": trust_domain, "max_message_mb": 64}),
        ("tls", {"ca": str(layout.ca_cert), "cert": str(layout.server_cert), "key": str(layout.server_key)}),
        (
            "keys",
            {
                "hpke_private": str(layout.hpke_key),
                "rest_key": str(layout.rest_key),
                "audit_signing": str(layout.audit_signing_key),
            },
        ),
        ("store", {"url": store_url}),
        (
            "policy",
            {
                "engine": "embedded",
                "bundle": str(bundle),
                "opa_url": "http://127.0.0.1:8181",
                "timeout_ms": 500,
            },
        ),
    ]
    sections.extend(
        (
            f"agencies.{agency}.signing_keys",
            {layout.signing_key_id(agency): str(layout.signing_pub(agency))},
        )
        for agency in DEV_AGENTS
    )
    sections.append(("observability", {"metrics_port": 0, "log_level": "info", "log_format": "json"}))
    out = ["# Gateway settings written by `gateway init` (development PKI). Paths are absolute."]
    for name, pairs in sections:
        out.extend(["", f"[{name}]", *_lines(pairs)])
    return ("\n".join(out) + "\n").encode("utf-8")


def _client_profile_toml(layout: PkiLayout, name: str, address: str, server_name: str) -> bytes:
    pairs = {
        "address": address,
        "server_name": server_name,
        "ca": str(layout.ca_cert),
        "cert": str(layout.client_cert(name)),
        "key": str(layout.client_key(name)),
    }
    header = f"# Client profile for {name}, written by `gateway init`: where the gateway is, and as whom."
    return ("\n".join([header, *_lines(pairs)]) + "\n").encode("utf-8")
