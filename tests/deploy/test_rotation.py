"""The rotation commands of deploy/README.md ("Rotating keys and certificates") are real: the keys
and certificates OpenSSL makes with them load with the gateway's own loaders and serve, and a
gateway trusting two CAs (the overlap of a CA rotation) admits clients of both and no others."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from deploy_files import DEPLOY_README

from gateway._pb import query_pb2, query_pb2_grpc
from gateway._settings import ClientProfile, GatewaySettings, load_gateway_keys
from gateway._tls import client_channel
from gateway.pki import PkiLayout, init_dev_pki
from gateway.server import build_gateway

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="the openssl command is not installed"
)


def _sh(script: str, cwd: Path) -> None:
    """Run README-style commands with bash (process substitution), keys owner-only from the start."""
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "umask 077\n" + script],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def layout(tmp_path: Path) -> PkiLayout:
    return init_dev_pki(tmp_path / "pki", listen="127.0.0.1:0")


def _settings(layout: PkiLayout, **changes: Path) -> GatewaySettings:
    settings = GatewaySettings.from_file(layout.gateway_config, environ={})
    tls = {k: v for k, v in changes.items() if k in ("ca", "cert", "key")}
    keys = {k: v for k, v in changes.items() if k in ("hpke_private", "audit_signing")}
    return dataclasses.replace(
        settings,
        tls=dataclasses.replace(settings.tls, **tls),
        keys=dataclasses.replace(settings.keys, **keys),
    )


def _in_readme(*fragments: str) -> None:
    text = DEPLOY_README.read_text(encoding="utf-8")
    for fragment in fragments:
        assert fragment in text, fragment


def test_openssl_hpke_key_pair_loads_as_the_gateways_key(layout: PkiLayout, tmp_path: Path) -> None:
    """`openssl genpkey -algorithm X25519` makes a key the gateway loads as its HPKE key, and
    `openssl pkey -pubout` its public half, in the PEM form agents read."""
    _in_readme(
        "openssl genpkey -algorithm X25519 -out", "openssl pkey -in /etc/datashare/keys/hpke-2.key -pubout"
    )
    _sh(
        "openssl genpkey -algorithm X25519 -out hpke-2.key\nopenssl pkey -in hpke-2.key -pubout -out hpke-2.pub",
        tmp_path,
    )
    keys = load_gateway_keys(_settings(layout, hpke_private=tmp_path / "hpke-2.key"))
    public = serialization.load_pem_public_key((tmp_path / "hpke-2.pub").read_bytes())
    assert isinstance(keys.hpke_private, X25519PrivateKey)
    assert public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == (
        keys.hpke_private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    )


def test_openssl_audit_key_loads_as_the_gateways_signing_key(layout: PkiLayout, tmp_path: Path) -> None:
    """`openssl genpkey -algorithm ED25519` makes a key the gateway loads as its audit signing key."""
    _in_readme("openssl genpkey -algorithm ED25519 -out /etc/datashare/keys/audit-signing-2.key")
    _sh("openssl genpkey -algorithm ED25519 -out audit-signing-2.key", tmp_path)
    keys = load_gateway_keys(_settings(layout, audit_signing=tmp_path / "audit-signing-2.key"))
    assert isinstance(keys.audit_signing, Ed25519PrivateKey)


def _server_certificate(layout: PkiLayout, folder: Path) -> None:
    """The README's commands for a new server key and certificate, signed by the dev CA."""
    _sh(
        f"""
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out tls-2.key
openssl req -new -key tls-2.key -subj "/CN=DataShare gateway" \\
    -addext "subjectAltName=DNS:gateway.datashare.local" -out gateway-2.csr
openssl x509 -req -in gateway-2.csr -CA {layout.ca_cert} -CAkey {layout.ca_key} -days 365 -copy_extensions copy \\
    -extfile <(printf 'extendedKeyUsage=serverAuth\\nkeyUsage=digitalSignature\\n') -out gateway-2.pem
""",
        folder,
    )


def _client_certificate(ca_cert: Path, ca_key: Path, uri: str, folder: Path, name: str) -> tuple[Path, Path]:
    """A client key and certificate for the SPIFFE `uri`, issued by the given CA (README's recipe)."""
    _sh(
        f"""
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {name}.key
openssl req -new -key {name}.key -subj "/CN={name}" -addext "subjectAltName={uri}" -out {name}.csr
openssl x509 -req -in {name}.csr -CA {ca_cert} -CAkey {ca_key} -days 30 -copy_extensions copy \\
    -extfile <(printf 'extendedKeyUsage=clientAuth\\nkeyUsage=digitalSignature\\n') -out {name}.pem
""",
        folder,
    )
    return folder / f"{name}.pem", folder / f"{name}.key"


def _new_ca(folder: Path, name: str) -> tuple[Path, Path]:
    _sh(
        f"""
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {name}.key
openssl req -x509 -new -key {name}.key -subj "/CN={name}" -days 30 \\
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out {name}.pem
""",
        folder,
    )
    return folder / f"{name}.pem", folder / f"{name}.key"


def _analyst_uri(layout: PkiLayout) -> str:
    cert = x509.load_pem_x509_certificate(layout.client_cert("health-analyst").read_bytes())
    (uri,) = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    )
    return f"URI:{uri}"


Serve = Callable[[GatewaySettings], int]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start gateways (returning each one's port); all are stopped after the test."""
    started = []

    def start(settings: GatewaySettings) -> int:
        gateway = build_gateway(settings)
        started.append(gateway)
        return gateway.start()

    yield start
    for gateway in started:
        gateway.stop(grace=0)


def _list(layout: PkiLayout, port: int, **changes: Path) -> grpc.StatusCode | None:
    profile = ClientProfile.from_file(layout.client_profile("health-analyst"))
    profile = dataclasses.replace(profile, address=f"127.0.0.1:{port}", **changes)
    with client_channel(profile) as channel:
        try:
            query_pb2_grpc.QueryStub(channel).ListDatasets(query_pb2.ListDatasetsRequest(), timeout=10)
        except grpc.RpcError as exc:
            return exc.code()
    return None


def test_openssl_server_certificate_serves(layout: PkiLayout, tmp_path: Path, serve: Serve) -> None:
    """A server key and certificate made with the README's commands and the CA start the gateway, and
    an analyst who trusts only the CA connects to it by its name."""
    _in_readme("openssl req -new -key /etc/datashare/keys/tls-2.key", "-copy_extensions copy")
    _server_certificate(layout, tmp_path)
    settings = _settings(layout, cert=tmp_path / "gateway-2.pem", key=tmp_path / "tls-2.key")
    port = serve(settings)
    assert _list(layout, port) is None


def test_ca_overlap_admits_clients_of_both_cas_and_no_other(
    layout: PkiLayout, tmp_path: Path, serve: Serve
) -> None:
    """With `[tls] ca` holding the old and the new CA (`cat ca-2.pem >> ca.pem`), an analyst whose
    certificate comes from either is served, and one from a third CA is refused at the handshake."""
    _in_readme("cat ca-2.pem >> ca.pem")
    new_ca, new_ca_key = _new_ca(tmp_path, "ca-2")
    other_ca, other_ca_key = _new_ca(tmp_path, "ca-other")
    bundle = tmp_path / "ca-bundle.pem"
    bundle.write_bytes(layout.ca_cert.read_bytes() + new_ca.read_bytes())
    port = serve(_settings(layout, ca=bundle))
    uri = _analyst_uri(layout)
    new_cert, new_key = _client_certificate(new_ca, new_ca_key, uri, tmp_path, "analyst-new")
    other_cert, other_key = _client_certificate(other_ca, other_ca_key, uri, tmp_path, "analyst-other")
    assert _list(layout, port) is None
    assert _list(layout, port, cert=new_cert, key=new_key) is None
    assert _list(layout, port, cert=other_cert, key=other_key) == grpc.StatusCode.UNAVAILABLE
