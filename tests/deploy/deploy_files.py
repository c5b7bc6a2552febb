"""The files in deploy/ and a reader for the systemd units there.

A unit file can repeat a key (LoadCredential=, SystemCallFilter=), so `unit_settings` returns every
value of every key of a section, in order; comments and blank lines are skipped.
"""

from __future__ import annotations

import re
import subprocess
import sys
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


def with_existing_binary(unit: Path, folder: Path, binary: Path | None = None) -> Path:
    """A copy of the unit in `folder` whose ExecStart binary exists here (verify checks that it does)."""
    text = re.sub(
        r"(?m)^ExecStart=\S+", f"ExecStart={binary or sys.executable}", unit.read_text(encoding="utf-8")
    )
    copy = folder / unit.name
    copy.write_text(text, encoding="utf-8")
    return copy


def systemd_verify(unit: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` of a unit file, run in its folder."""
    return subprocess.run(
        ["systemd-analyze", "verify", unit.name], cwd=unit.parent, capture_output=True, text=True, check=False
    )


def exposure(unit: Path, ceiling: float) -> tuple[float | None, subprocess.CompletedProcess[str]]:
    """`systemd-analyze security --offline` of a unit file: its overall exposure (None if not
    printed) and the run, which fails when the exposure is above `ceiling`."""
    proc = subprocess.run(
        # --threshold counts in tenths of the printed level
        ["systemd-analyze", "security", "--offline=true", f"--threshold={round(ceiling * 10)}", unit.name],
        cwd=unit.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    return (float(match[1]) if match else None), proc


def uncommented_settings(unit: Path) -> list[str]:
    """The [Service] settings with no comment above them (directly or heading their group)."""
    lines = unit.read_text(encoding="utf-8").splitlines()
    start, end = lines.index("[Service]"), lines.index("[Install]")
    uncommented = []
    for i in range(start + 1, end):
        if lines[i] and not lines[i].startswith("#"):
            above = next((lines[j] for j in range(i - 1, start, -1) if not re.match(r"^\w+=", lines[j])), "")
            if not above.startswith("#"):
                uncommented.append(lines[i])
    return uncommented
