"""Loading a policy bundle: Rego modules plus data files, laid out as an OPA bundle.

``policies/x/y/data.yaml`` (or ``data.json``) becomes ``data.x.y``; every ``*.rego`` is a module.
The revision is a SHA-256 over every file's path and bytes, so any edit changes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.errors import ConfigError
from gateway.policy._schema import Locator, data_problems

DATA_FILES = ("data.yaml", "data.yml", "data.json")


@dataclass(frozen=True)
class Bundle:
    root: Path
    revision: str
    modules: Mapping[str, str]  # path relative to root -> Rego source (tests included)
    data: Mapping[str, Any] = field(default_factory=dict)
    data_files: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # file -> where in data

    @property
    def policy_modules(self) -> dict[str, str]:
        """The modules that make decisions, without the ``*_test.rego`` files."""
        return {p: s for p, s in self.modules.items() if not p.endswith("_test.rego")}


def load_bundle(root: Path) -> Bundle:
    """Read every module and data file under ``root``; ConfigError names the file (and line)."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"policy bundle {root}: not a directory")
    digest = hashlib.sha256()
    modules: dict[str, str] = {}
    data: dict[str, Any] = {}
    data_files: dict[str, tuple[str, ...]] = {}
    for path in bundle_files(root):
        rel = path.relative_to(root).as_posix()
        if path.suffix == ".rego":
            raw = path.read_bytes()
            modules[rel] = _text(raw, rel)
        elif path.name in DATA_FILES:
            raw = path.read_bytes()
            parts = path.relative_to(root).parent.parts
            _place(data, parts, _parse_data(raw, rel), rel)
            data_files[rel] = parts
        else:
            continue
        digest.update(rel.encode() + b"\0" + hashlib.sha256(raw).digest())
    if not modules:
        raise ConfigError(f"policy bundle {root}: holds no .rego module")
    return Bundle(
        root=root, revision=digest.hexdigest()[:16], modules=modules, data=data, data_files=data_files
    )


def bundle_files(root: Path) -> list[Path]:
    """Every file under ``root`` outside dot folders and dot files' names, sorted, with symlinked
    folders followed (each real folder once).

    A Kubernetes ConfigMap volume is laid out that way: the files sit in a hidden timestamped
    folder, ``..data`` points at it, and each top-level name is a symlink through ``..data``, so
    an update swaps one symlink atomically. Path.rglob does not follow symlinked folders before
    Python 3.13 and would see no module there."""
    found: list[Path] = []
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a symlink loop, or a folder reached twice
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        paths = (Path(folder) / name for name in files if not name.startswith("."))
        found.extend(path for path in paths if path.is_file())  # no broken links, sockets, ...
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def validate_bundle(bundle: Bundle) -> list[str]:
    """Every problem of the bundle's data (schemas, then references), as ``file:line: data.path:
    message`` lines; empty when the data is sound."""
    locator = Locator(bundle.root, bundle.data_files)
    return [locator.format(problem) for problem in data_problems(bundle.data)]


def load_checked_bundle(root: Path) -> Bundle:
    """load_bundle, then validate_bundle: what the gateway serves at start and on reload.
    ConfigError lists every problem, each naming file, line and data path."""
    bundle = load_bundle(root)
    problems = validate_bundle(bundle)
    if problems:
        raise ConfigError(f"policy bundle {bundle.root}: " + "; ".join(problems))
    return bundle


def _text(raw: bytes, rel: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{rel}: not UTF-8 text") from exc


def _parse_data(raw: bytes, rel: str) -> Any:
    text = _text(raw, rel)
    try:
        return json.loads(text) if rel.endswith(".json") else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{rel}:{exc.lineno}: {exc.msg}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{rel}{line}: {getattr(exc, 'problem', None) or 'not valid YAML'}") from exc


def _place(data: dict[str, Any], parts: tuple[str, ...], value: Any, rel: str) -> None:
    if not parts:
        if not isinstance(value, dict):
            raise ConfigError(f"{rel}: top-level data must be a mapping")
        data.update(value)
        return
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    if parts[-1] in node:
        raise ConfigError(f"{rel}: data.{'.'.join(parts)} is defined twice")
    node[parts[-1]] = value
