"""deploy/agent/pyproject.toml builds `datashare-agent`: a wheel holding only the agent package, the
deploy files, and only the agent's own dependencies; installed alone, its `agent` runs without the
gateway's server dependencies."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from agent_sandbox import run_agent
from deploy_files import DEPLOY, PYPROJECT, REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("hatchling") is None,
        reason="hatchling (the build backend) is not installed here; the wheel is built offline with it",
    ),
]

AGENT_DEPENDENCIES = {"grpcio", "protobuf", "cryptography", "rich", "pyarrow"}
SERVER_ONLY = {"sqlalchemy", "gordon-to-regorus", "pyyaml", "structlog", "prometheus-client", "psycopg"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The agent's wheel, built offline from the source tree (no build isolation, no download)."""
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(out),
            str(DEPLOY),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (built,) = out.glob("datashare_agent-*.whl")
    return built


def _metadata(wheel: Path) -> dict[str, list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(archive.read(name).decode("utf-8"))
    return {key: message.get_all(key) or [] for key in ("Name", "Version", "Requires-Dist", "Provides-Extra")}


def test_wheel_holds_only_the_agent_package_and_its_deploy_files(wheel: Path) -> None:
    """Every file is under agents/ (no gateway/, no bytecode) or is one of the deploy files."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"agents", "datashare_agent-0.1.0.dist-info", "datashare_agent-0.1.0.data"}
    assert "agents/cli.py" in names
    assert "agents/_pb/ingest_pb2.py" in names
    sources = {p.relative_to(REPO).as_posix() for p in (REPO / "agents").rglob("*.py")}
    assert sources <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    shared = {n.rsplit("/", 1)[1] for n in names if n.startswith("datashare_agent-0.1.0.data/data/share/")}
    assert shared == {
        "datashare-agent.service",
        "datashare-agent.sysusers",
        "agent.example.toml",
        "README.md",
    }


def test_wheel_requires_only_the_agents_dependencies(wheel: Path) -> None:
    """Requires-Dist names grpcio, protobuf, cryptography, rich and pyarrow, plus sqlalchemy only under the `sql`
    extra; no other server dependency."""
    metadata = _metadata(wheel)
    plain = {_name(r) for r in metadata["Requires-Dist"] if "extra ==" not in r}
    extras = {_name(r) for r in metadata["Requires-Dist"] if "extra == 'sql'" in r}
    assert plain == AGENT_DEPENDENCIES
    assert extras == {"sqlalchemy"}
    assert metadata["Provides-Extra"] == ["sql"]
    assert not plain & SERVER_ONLY


def test_agent_distribution_version_follows_the_repository() -> None:
    """deploy/agent/pyproject.toml's version and dependency ranges equal the repository's."""
    agent = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    root = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert agent["version"] == root["version"]
    root_ranges = {_name(r): r for r in root["dependencies"]}
    assert {_name(r): r for r in agent["dependencies"]} == {
        name: root_ranges[name] for name in AGENT_DEPENDENCIES
    }


def test_installed_wheel_runs_without_server_dependencies(wheel: Path, tmp_path: Path) -> None:
    """Installed alone into a folder (no dependencies, no index), the wheel's `agent push --help` runs
    from that folder with every gateway-only module refused."""
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    proc = run_agent(["push", "--help"], cwd=tmp_path, extra_path=target)
    assert proc.returncode == 0, proc.stderr
    assert "[fields.<name>]" in proc.stdout
    origin = subprocess.run(
        [sys.executable, "-c", "import agents.cli; print(agents.cli.__file__)"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(origin.stdout.strip()).is_relative_to(target)


def _name(requirement: str) -> str:
    """The project name a requirement string names ('grpcio<2,>=1.85' -> 'grpcio')."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return match[0].lower()
