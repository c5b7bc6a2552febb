"""The agent installs and runs without the gateway's server dependencies (issue 3, item 6).

Each test runs the agent's command line in a child Python that refuses to import the gateway
package and every dependency only the gateway needs (agent_sandbox.BLOCKED), and fails if any of
them got imported anyway.
"""

from __future__ import annotations

import json
import subprocess
import sys

from agent_sandbox import BLOCKED, REPO, AgentSite, agent_program, run_agent


def test_blocker_refuses_a_gateway_import() -> None:
    """The sandbox really blocks: a child that imports the gateway package fails to."""
    program = agent_program().replace("from agents.cli import main", "import gateway.settings")
    proc = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode != 0
    assert "blocked: not an agent dependency" in proc.stderr
    assert {"gateway", "sqlalchemy", "regorus", "yaml", "structlog", "prometheus_client"} <= set(BLOCKED)


def test_agent_help_without_server_dependencies() -> None:
    """`agent --help` prints the commands without any gateway-only module importable."""
    proc = run_agent(["--help"])
    assert proc.returncode == 0, proc.stderr
    for command in ("push", "check", "preview", "run"):
        assert command in proc.stdout


def test_agent_push_help_without_server_dependencies() -> None:
    """`agent push --help` prints the config format without any gateway-only module importable."""
    proc = run_agent(["push", "--help"])
    assert proc.returncode == 0, proc.stderr
    assert "[fields.<name>]" in proc.stdout


def test_agent_push_without_server_dependencies(agent_site: AgentSite) -> None:
    """A real `agent push` into a real gateway succeeds with no gateway-only module importable, and the
    gateway then holds exactly the records the agent says it sent."""
    proc = run_agent(["push", "--config", str(agent_site.config), "--json"])
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["sent"] > 250
    assert summary["sent"] + summary["rejected"] == summary["read"]
    assert agent_site.gateway.stored_rows("ed_visits") == summary["sent"]
