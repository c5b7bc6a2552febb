"""deploy/Dockerfile, its .dockerignore and deploy/healthcheck.py. No Docker engine here: the
Dockerfile is parsed with BuildKit's own parser (the `dockerfile` package) and checked against the
repository; the health check runs against a real gateway."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dockerfile
import pytest
from deploy_files import DOCKERFILE, REPO
from dockerignore import excluded, rules

from gateway.server import Gateway

HEALTHCHECK = REPO / "deploy" / "healthcheck.py"
IMAGE_USER = "10001:10001"


def _commands() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(DOCKERFILE)))


def _final_stage() -> list[dockerfile.Command]:
    commands = _commands()
    last_from = max(i for i, c in enumerate(commands) if c.cmd == "FROM")
    return commands[last_from:]


def _context_files() -> list[str]:
    """Every file git tracks, as the build context would hold it (paths relative to the repository)."""
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    return listed.stdout.split()


def test_dockerfile_parses_with_buildkits_parser() -> None:
    """The Dockerfile parses, has a build stage and a runtime stage, and every instruction is known."""
    commands = _commands()
    known = {"FROM", "ARG", "ENV", "WORKDIR", "COPY", "RUN", "USER", "EXPOSE", "HEALTHCHECK"}
    known |= {"STOPSIGNAL", "ENTRYPOINT", "CMD"}
    assert {c.cmd for c in commands} <= known
    assert next(c.value[-1] for c in commands if c.cmd == "FROM") == "build"
    assert sum(c.cmd == "FROM" for c in commands) == 2


def test_every_copy_source_exists_and_is_in_the_build_context() -> None:
    """Each COPY from the context names a path that exists in the repository and that
    Dockerfile.dockerignore lets into the context."""
    patterns = rules(DOCKERFILE.with_name("Dockerfile.dockerignore"))
    copies = [c for c in _commands() if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags)]
    sources = [source for c in copies for source in c.value[:-1]]
    assert sources
    for source in sources:
        path = REPO / source
        assert path.exists(), source
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        tracked = set(_context_files())
        kept = [p for p in files if p.relative_to(REPO).as_posix() in tracked]
        assert kept, source
        assert not [p for p in kept if excluded(p.relative_to(REPO).as_posix(), patterns)], source


def test_build_context_leaves_out_keys_and_local_state() -> None:
    """Private keys, certificates, databases, the venv, git history and tests stay out of the context."""
    patterns = rules(DOCKERFILE.with_name("Dockerfile.dockerignore"))
    for path in (
        ".git/config",
        ".venv/bin/python",
        "tests/deploy/test_container_image.py",
        "dev-pki/gateway/hpke.key",
        "gateway/secret.key",
        "deploy/compose/pki/ca.pem",
        "deploy/compose/secrets/pgpass",
        "gateway/__pycache__/x.cpython-311.pyc",
        "gateway.db",
    ):
        assert excluded(path, patterns), path
    assert not excluded("gateway/server/_app.py", patterns)


def test_image_runs_the_gateway_as_an_unprivileged_numeric_user() -> None:
    """The runtime stage ends as user 10001:10001 (numeric, so runAsNonRoot can check it) and runs
    `gateway serve --config /etc/datashare/gateway.toml`."""
    final = _final_stage()
    users = [c.value[0] for c in final if c.cmd == "USER"]
    assert users == [IMAGE_USER]
    (entrypoint,) = [c for c in final if c.cmd == "ENTRYPOINT"]
    (cmd,) = [c for c in final if c.cmd == "CMD"]
    assert entrypoint.json and Path(entrypoint.value[0]).name == "gateway"
    assert cmd.json and list(cmd.value) == ["serve", "--config", "/etc/datashare/gateway.toml"]


def test_image_health_check_runs_the_copied_script() -> None:
    """HEALTHCHECK runs deploy/healthcheck.py where the Dockerfile copies it, against the health port."""
    final = _final_stage()
    (check,) = [c for c in final if c.cmd == "HEALTHCHECK"]
    assert check.json and check.value[0] == "CMD"
    script = check.value[2]
    copied = {c.value[-1]: c.value[0] for c in final if c.cmd == "COPY"}
    assert copied[script] == "deploy/healthcheck.py"
    assert check.value[3] == "127.0.0.1:8081"
    exposed = {port for c in final if c.cmd == "EXPOSE" for port in c.value}
    assert {"50051", "8081"} <= exposed


@pytest.fixture
def gateway(health_listening_gateway: Gateway) -> Gateway:
    return health_listening_gateway


def _healthcheck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args], capture_output=True, text=True, check=False, timeout=30
    )


def test_healthcheck_passes_on_a_serving_gateway(gateway: Gateway) -> None:
    """Against a started gateway's health listener the script exits 0 and prints nothing."""
    proc = _healthcheck(f"127.0.0.1:{gateway.health_port}")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_healthcheck_fails_on_a_stopping_gateway(gateway: Gateway) -> None:
    """Once the gateway starts stopping (NOT_SERVING) the script exits 1 naming the status."""
    gateway.health.enter_graceful_shutdown()
    proc = _healthcheck(f"127.0.0.1:{gateway.health_port}")
    assert proc.returncode == 1
    assert proc.stderr == "unhealthy: NOT_SERVING\n"


def test_healthcheck_fails_when_nothing_listens(gateway: Gateway) -> None:
    """With no listener the script exits 1 within its timeout, saying UNAVAILABLE."""
    port = gateway.health_port
    gateway.stop(grace=0)
    proc = _healthcheck(f"127.0.0.1:{port}")
    assert proc.returncode == 1
    assert proc.stderr.startswith("unhealthy: ")
