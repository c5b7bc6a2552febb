"""The files in deploy/ and a reader for the systemd units there.

A unit file can repeat a key (LoadCredential=, SystemCallFilter=), so `unit_settings` returns every
value of every key of a section, in order; comments and blank lines are skipped.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "agent"
UNIT = DEPLOY / "datashare-agent.service"
SYSUSERS = DEPLOY / "datashare-agent.sysusers"
EXAMPLE_CONFIG = DEPLOY / "agent.example.toml"
README = DEPLOY / "README.md"
PYPROJECT = DEPLOY / "pyproject.toml"
CREDENTIALS_DIR = Path("/run/credentials") / UNIT.name

GATEWAY_DIR = REPO / "deploy" / "gateway"
GATEWAY_UNIT = GATEWAY_DIR / "datashare-gateway.service"
GATEWAY_SYSUSERS = GATEWAY_DIR / "datashare-gateway.sysusers"
GATEWAY_EXAMPLE_CONFIG = GATEWAY_DIR / "gateway.example.toml"
OPA_UNIT = GATEWAY_DIR / "datashare-opa.service"
GATEWAY_CREDENTIALS_DIR = Path("/run/credentials") / GATEWAY_UNIT.name
COMPOSE_DIR = REPO / "deploy" / "compose"
K8S_DIR = REPO / "deploy" / "k8s"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
DEPLOY_README = REPO / "deploy" / "README.md"


def unit_settings(path: Path = UNIT, section: str = "Service") -> dict[str, list[str]]:
    """Every `Key=value` of one [section] of a unit file: key -> values in file order."""
    settings: dict[str, list[str]] = {}
    current = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            continue
        if current == section:
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings
