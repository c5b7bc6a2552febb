"""deploy/README.md describes the files that are there, and the commands it gives use the names
the manifests and units use."""

from __future__ import annotations

import re

from deploy_files import DEPLOY_README, REPO

DEPLOY = REPO / "deploy"


def _table_paths() -> list[str]:
    """The backticked paths of the first table's first column."""
    lines = DEPLOY_README.read_text(encoding="utf-8").split("\n## ", 1)[0].splitlines()
    cells = [line.split("|")[1] for line in lines if line.startswith("| `")]
    return [path for cell in cells for path in re.findall(r"`([^`]+)`", cell)]


def test_every_file_in_the_table_exists() -> None:
    """Each path the README's table lists exists under deploy/."""
    paths = _table_paths()
    assert len(paths) >= 10
    for path in paths:
        assert (DEPLOY / path).exists(), path


def test_every_gateway_deploy_file_is_in_the_table() -> None:
    """Each file of deploy/gateway, deploy/compose and the top of deploy/ is listed (deploy/k8s as a
    folder), so the page does not fall behind the files."""
    listed = set(_table_paths())
    files = [p for folder in ("gateway", "compose") for p in (DEPLOY / folder).iterdir() if p.is_file()]
    files += [p for p in DEPLOY.iterdir() if p.is_file() and p.name != "README.md"]
    for path in files:
        if path.name.startswith("."):
            continue
        assert path.relative_to(DEPLOY).as_posix() in listed, path
    assert "k8s/" in listed


def test_kubernetes_commands_create_what_the_manifests_reference() -> None:
    """The Secrets and ConfigMaps the README's `kubectl create` lines make are exactly the ones the
    Deployment references and the repository does not hold."""
    text = DEPLOY_README.read_text(encoding="utf-8")
    created = set(re.findall(r"create (?:secret generic|configmap) (\S+)", text))
    deployment = (DEPLOY / "k8s" / "deployment.yaml").read_text(encoding="utf-8")
    referenced = set(re.findall(r"(?:secretName|name): (datashare-[a-z-]+)", deployment))
    committed = set(
        re.findall(
            r"(?m)^  name: (datashare-[a-z-]+)",
            "".join(p.read_text(encoding="utf-8") for p in (DEPLOY / "k8s").glob("*.yaml")),
        )
    )
    assert created == referenced - committed - {"datashare-gateway"}
