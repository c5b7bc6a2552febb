"""The files in deploy/agent and a reader for the one systemd unit there.

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
