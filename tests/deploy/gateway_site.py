"""A gateway config written for a deployment (systemd, compose, Kubernetes), made loadable here.

Deployment configs name absolute paths (/etc/datashare/..., /run/credentials/..., /run/secrets/...)
that do not exist on the test machine. `materialise` copies a config under a folder, re-rooting
every absolute path there and putting at each path the file the key asks for, taken from a fresh
development PKI (private keys owner-only) or the shipped policy bundle, so that the gateway's own
settings loader and key loader read the very text that ships."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

from gateway.pki import PkiLayout
from gateway.policy._locate import shipped_bundle_dir

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
