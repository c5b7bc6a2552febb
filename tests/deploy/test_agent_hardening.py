"""The unit's MemoryDenyWriteExecute=yes is safe: grpcio, cryptography, pyarrow and CPython need no memory
that is both writable and executable, so a real push works under the same seccomp rules."""

from __future__ import annotations

import json

import pytest
from agent_sandbox import FILTER_INEFFECTIVE_EXIT, AgentSite, run_agent, seccomp_filter_supported

pytestmark = pytest.mark.skipif(
    not seccomp_filter_supported(), reason="the MemoryDenyWriteExecute filter is written for x86-64 Linux"
)


def test_write_execute_filter_refuses_writable_executable_memory() -> None:
    """Under the filter a writable and executable mapping is refused (the sandbox checks this itself
    before running the agent), so `agent --help` runs and exits 0 only when the filter is in force."""
    proc = run_agent(["--help"], deny_write_execute=True)
    assert proc.returncode != FILTER_INEFFECTIVE_EXIT, proc.stderr
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("running", ["sqlite"], indirect=True)
def test_agent_push_under_memory_deny_write_execute(agent_site: AgentSite) -> None:
    """A real `agent push` (TLS handshake, HPKE, Ed25519, gRPC) into a real gateway succeeds with
    writable-and-executable memory forbidden, as the systemd unit forbids it."""
    proc = run_agent(["push", "--config", str(agent_site.config), "--json"], deny_write_execute=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["sent"] > 250
    assert agent_site.gateway.stored_rows("ed_visits") == summary["sent"]
