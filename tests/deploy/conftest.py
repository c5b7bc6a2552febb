"""Fixtures for the deploy tests: the e2e harness's real gateway (tests/e2e/e2e_harness.py) and an
ED-visits agent config pointing at it, with the demo's synthetic export."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

# the harness lives beside the e2e tests; reuse its gateway rather than start another kind
from agent_sandbox import AgentSite
from e2e_harness import Running, pki, running

from gateway.demo import generate, write_agent_configs

__all__ = ["agent_site", "pki", "running"]


@pytest.fixture
def agent_site(running: Running, tmp_path: Path) -> AgentSite:
    """The health agency's ED export (about 300 rows) and its agent config, with a fresh state_dir."""
    data = tmp_path / "data"
    generate(data, people=100)
    written = write_agent_configs(running.layout.root, data, address=running.address)["health"]
    state_dir = tmp_path / "state"
    # the PKI folder is shared by the session; each test gets its own config and state
    text = re.sub(r'(?m)^state_dir = ".*"$', f'state_dir = "{state_dir}"', written.read_text())
    config = written.with_name(f"agent-health-{tmp_path.name}.toml")
    config.write_text(text)
    return AgentSite(running, config, state_dir)
