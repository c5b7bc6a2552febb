"""Fixtures for the agent's tests: a throwaway PKI, agency keys, a workspace, a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_testkit import (
    AgencyKeys,
    RecordingIngest,
    RunningServer,
    TestPki,
    Workspace,
    make_contract,
    make_workspace,
    start_server,
    write_pki,
)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return write_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def agency_keys() -> AgencyKeys:
    return AgencyKeys.generate()


@pytest.fixture
def workspace(tmp_path: Path, pki: TestPki, agency_keys: AgencyKeys) -> Workspace:
    return make_workspace(tmp_path / "agent", pki, agency_keys)


@pytest.fixture
def server(pki: TestPki, agency_keys: AgencyKeys, workspace: Workspace) -> Iterator[RunningServer]:
    """A real Ingest server over mutual TLS; the workspace config points at it."""
    running = start_server(pki, RecordingIngest(make_contract(), agency_keys))
    workspace.address = running.address
    workspace.write_config()
    try:
        yield running
    finally:
        running.server.stop(grace=None)
