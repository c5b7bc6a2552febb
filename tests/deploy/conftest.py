"""Fixtures for the deploy tests: the e2e harness's real gateway (tests/e2e/e2e_harness.py) and an
ED-visits agent config pointing at it, with the demo's synthetic export."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "policies"))

# the harness lives beside the e2e tests; reuse its gateway rather than start another kind
from agent_sandbox import AgentSite
from e2e_harness import Running, pki, running

from gateway.demo import generate, write_agent_configs

__all__ = ["agent_site", "opa_sidecar", "pki", "running"]


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


@pytest.fixture
def opa_sidecar() -> Iterator[Any]:
    """An endpoint speaking OPA's REST API and deciding with real OPA's engine
    (tests/policies/opa_rest_server.py), standing in for the OPA container."""
    pytest.importorskip(
        "opa_bindings", reason="real OPA's engine (opa-golib-python-bindings) is not installed"
    )
    from opa_rest_server import OpaRestServer

    with OpaRestServer().serve() as server:
        yield server
