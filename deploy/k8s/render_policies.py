"""Write the policy bundle into deploy/k8s: `python deploy/k8s/render_policies.py` after editing
policies/.

It writes policies.yaml (the ConfigMap datashare-policies: one key per Rego module or data file of
policies/, the path with "/" spelt "--") and, between the BEGIN and END markers of
deployment.yaml, the volume's items that put each key back at its path, so the mounted folder is
policies/ file for file and the gateway computes the same bundle revision as `gateway policy check
policies/`. tests/deploy fails when either file is stale."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
POLICIES = HERE.parents[1] / "policies"
CONFIGMAP = HERE / "policies.yaml"
DEPLOYMENT = HERE / "deployment.yaml"
SEPARATOR = "--"
_ITEMS = re.compile(r"(?ms)^( *)# BEGIN policies items.*?\n(.*?)^ *# END policies items")


def bundle_files(root: Path = POLICIES) -> dict[str, str]:
    """ConfigMap key -> path in the bundle, for every module and data file under root."""
    files = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and (p.suffix == ".rego" or p.name in ("data.yaml", "data.yml", "data.json"))
    )
    keys = {path.replace("/", SEPARATOR): path for path in files}
    if len(keys) != len(files) or any(SEPARATOR in path for path in files):
        raise SystemExit(f"{root}: file names with {SEPARATOR!r} cannot be told apart in a ConfigMap")
    return keys


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as `|` blocks, so policies.yaml reads like the files it holds."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _str)


def configmap(root: Path = POLICIES) -> str:
    """The text of policies.yaml."""
    data = {key: (root / path).read_text(encoding="utf-8") for key, path in bundle_files(root).items()}
    document = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "datashare-policies",
            "labels": {
                "app.kubernetes.io/name": "datashare-gateway",
                "app.kubernetes.io/component": "policies",
            },
        },
        "data": data,
    }
    header = (
        "# Written by deploy/k8s/render_policies.py from policies/; do not edit here.\n"
        "# kubectl apply it after a reviewed policy change: kubelet swaps the files in and the\n"
        "# gateway reloads the bundle within [policy] reload_interval_s (no restart).\n"
    )
    return header + yaml.dump(document, Dumper=_LiteralDumper, sort_keys=False, allow_unicode=True, width=110)


def deployment(text: str, root: Path = POLICIES) -> str:
    """deployment.yaml's text with the items between the markers written afresh."""
    match = _ITEMS.search(text)
    if match is None:
        raise SystemExit(f"{DEPLOYMENT}: the BEGIN/END policies items markers are missing")
    indent = match[1]
    items = "".join(f"{indent}- {{key: {key}, path: {path}}}\n" for key, path in bundle_files(root).items())
    return text[: match.start(2)] + items + text[match.end(2) :]


def main() -> int:
    CONFIGMAP.write_text(configmap(), encoding="utf-8")
    DEPLOYMENT.write_text(deployment(DEPLOYMENT.read_text(encoding="utf-8")), encoding="utf-8")
    sys.stdout.write(f"wrote {CONFIGMAP} and the policies items of {DEPLOYMENT}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
