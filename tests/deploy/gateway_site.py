"""A gateway config written for a deployment (systemd, compose, Kubernetes), made loadable here.

Deployment configs name absolute paths (/etc/datashare/..., /run/credentials/..., /run/secrets/...)
that do not exist on the test machine. `materialise` copies a config under a folder, re-rooting
every absolute path there and putting at each path the file the key asks for, taken from a fresh
development PKI (private keys owner-only) or the shipped policy bundle, so that the gateway's own
settings loader and key loader read the very text that ships."""

from __future__ import annotations

import dataclasses
import re
import shutil
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway._pb import query_pb2, query_pb2_grpc
from gateway._settings import ClientProfile, GatewaySettings
from gateway._tls import client_channel
from gateway.pki import PkiLayout
from gateway.policy._locate import shipped_bundle_dir
from gateway.server import Gateway, build_gateway

_FILES = {
    ("tls", "ca"): "ca_cert",
    ("tls", "cert"): "server_cert",
    ("tls", "key"): "server_key",
    ("keys", "hpke_private"): "hpke_key",
    ("keys", "rest_key"): "rest_key",
    ("keys", "audit_signing"): "audit_signing_key",
}


def materialise(text: str, root: Path, layout: PkiLayout) -> Path:
    """`text` (a gateway.toml) re-rooted under `root` with every file it names in place; the path
    of the written config."""
    doc: dict[str, Any] = tomllib.loads(text)
    for (section, key), attribute in _FILES.items():
        _place(root, doc[section][key], getattr(layout, attribute))
    bundle = doc.get("policy", {}).get("bundle")
    if bundle is not None:
        target = _rerooted(root, bundle)
        if not target.exists():
            shutil.copytree(shipped_bundle_dir(), target)
    for agency, table in doc.get("agencies", {}).items():
        for path in table["signing_keys"].values():
            _place(root, path, layout.signing_pub(agency))
    config = root / "gateway.toml"
    config.write_text(re.sub(r'= "/', f'= "{root}/', text), encoding="utf-8")
    return config


def _rerooted(root: Path, path: str) -> Path:
    assert path.startswith("/"), f"deployment configs name absolute paths: {path}"
    return root / path.lstrip("/")


def _place(root: Path, path: str, source: Path) -> None:
    target = _rerooted(root, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(source.stat().st_mode & 0o777)


@contextmanager
def serving_here(config: Path, *, opa_url: str, database: Path) -> Iterator[Gateway]:
    """The gateway a materialised deployment config describes, started with only its network
    addresses (loopback, free ports), its database (SQLite at `database`) and its OPA's address
    moved to this machine through the environment, as a container would set them."""
    environ = {
        "DATASHARE_GATEWAY_GATEWAY_LISTEN": "127.0.0.1:0",
        "DATASHARE_GATEWAY_GATEWAY_HEALTH_LISTEN": "127.0.0.1:0",
        "DATASHARE_GATEWAY_STORE_URL": f"sqlite:///{database}",
        "DATASHARE_GATEWAY_POLICY_OPA_URL": opa_url,
    }
    gateway = build_gateway(GatewaySettings.from_file(config, environ=environ))
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop(grace=0)


def health_status(port: int, service: str = "") -> int:
    """What a probe without TLS reads from the health listener on `port`."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    status: int = reply.status
    return status


def analyst_datasets(layout: PkiLayout, port: int) -> int:
    """How many datasets the health analyst may ask about, asked over mTLS on `port`."""
    profile = ClientProfile.from_file(layout.client_profile("health-analyst"))
    profile = dataclasses.replace(profile, address=f"127.0.0.1:{port}")
    with client_channel(profile) as channel:
        listing = query_pb2_grpc.QueryStub(channel).ListDatasets(query_pb2.ListDatasetsRequest(), timeout=10)
    return len(listing.datasets)
