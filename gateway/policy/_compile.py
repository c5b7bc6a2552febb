"""Compiling a policy bundle with regorus, and what regorus does not check by itself.

regorus parses Rego v1 only (v0 syntax is an error), checks scoping lazily on the first
evaluation, and reports a call to an unknown function only when that call is evaluated. So a
bundle is compiled here in full, then its AST is searched for calls that no builtin and no
bundle function answers. Errors are one line, ``file:line:col: message``, without the Rust
backtrace regorus appends.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import regorus

from gateway.errors import ConfigError

_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOCATION = re.compile(r"-->\s*(?P<file>\S+?):(?P<line>\d+):(?P<col>\d+)")
_ERROR_LINE = re.compile(r"^error:\s*(?P<message>.+)$", re.MULTILINE)
_BACKQUOTED = re.compile(r"`([^`]*)`")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_I64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Program:
    """Checked module sources and data: everything a thread needs to build its own engine."""

    modules: tuple[tuple[str, str], ...]
    data: Mapping[str, Any]

    def build(self) -> Any:
        """A ready engine; raises ConfigError naming file:line if any module does not compile."""
        engine = regorus.Engine()
        for rel, source in self.modules:
            try:
                engine.add_policy(rel, source)
            except RuntimeError as exc:
                raise ConfigError(engine_message(exc, fallback_file=rel)) from exc
        try:
            engine.add_data(dict(self.data))
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ConfigError(f"policy data: {engine_message(exc)}") from exc
        try:
            # regorus checks the whole program (variable scoping, rule conflicts) lazily, on the
            # first evaluation; do it now so a broken bundle fails at start-up, not per request.
            engine.eval_query("true")
        except RuntimeError as exc:
            raise ConfigError(engine_message(exc)) from exc
        return engine


def compile_modules(modules: Mapping[str, str], data: Mapping[str, Any]) -> tuple[Program, Any]:
    """Compile and fully check modules against data: the program and an engine for this thread.

    ConfigError names file:line for syntax errors (regorus parses Rego v1 only, so v0 syntax is
    one), scoping errors and calls to functions that exist neither as builtins nor in the bundle
    (regorus would otherwise report those only when the call is first evaluated)."""
    try:
        plain_data = plain_input(data, "data")
    except InputError as exc:
        raise ConfigError(str(exc)) from exc
    program = Program(modules=tuple(sorted(modules.items())), data=plain_data)
    engine = program.build()
    unknown = unknown_functions(engine)
    if unknown:
        raise ConfigError("; ".join(unknown))
    return program, engine


def engine_message(exc: BaseException, *, fallback_file: str = "", redact: bool = False) -> str:
    """regorus's error as one line, ``file:line:col: message``, without the Rust backtrace."""
    text = str(exc).split("Stack backtrace:", 1)[0]
    found = _ERROR_LINE.search(text)
    message = found["message"].strip() if found else _first_line(text) or type(exc).__name__
    if redact:
        # Values from the input appear backquoted ("Got `\"x\"` instead"); names of functions
        # and rules are kept, anything else is withheld.
        message = _BACKQUOTED.sub(lambda m: m[0] if _IDENTIFIER.match(m[1]) else "`…`", message)
    where = _LOCATION.search(text)
    if where:
        return f"{where['file']}:{where['line']}:{where['col']}: {message}"
    return f"{fallback_file}: {message}" if fallback_file else message


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


# --- static checks over the AST --------------------------------------------------------------


@dataclass(frozen=True)
class _Module:
    file: str
    source: bytes
    package: tuple[str, ...]
    tree: Mapping[str, Any]


def _modules(engine: Any) -> list[_Module]:
    modules = []
    for item in json.loads(engine.get_ast_as_json()):
        tree = item["ast"]
        modules.append(
            _Module(
                file=item["source"]["file"],
                source=item["source"]["contents"].encode(),
                package=_ref_path(tree["package"]["refr"]) or (),
                tree=tree,
            )
        )
    return modules


def _ref_path(node: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The dotted name a reference spells (``data.x.f`` -> data, x, f); None if it is dynamic."""
    if "Var" in node:
        return (node["Var"]["value"],)
    if "RefDot" in node:
        base = _ref_path(node["RefDot"]["refr"])
        return None if base is None else (*base, node["RefDot"]["field"][1])
    if "RefBrack" in node:
        base = _ref_path(node["RefBrack"]["refr"])
        index = node["RefBrack"].get("index", {})
        if base is None or "String" not in index:
            return None
        return (*base, index["String"]["value"])
    return None


def _head_path(node: Mapping[str, Any]) -> tuple[str, ...]:
    """The static part of a rule head's reference: ``o[k] := ...`` defines ``o``."""
    if "RefDot" in node:
        return (*_head_path(node["RefDot"]["refr"]), node["RefDot"]["field"][1])
    if "RefBrack" in node:
        base = _head_path(node["RefBrack"]["refr"])
        index = node["RefBrack"].get("index", {})
        return (*base, index["String"]["value"]) if "String" in index else base
    return (node["Var"]["value"],) if "Var" in node else ()


def _rule_heads(module: _Module) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(kind, full data path) of every rule the module defines; kind is "function" or "rule"."""
    for rule in module.tree.get("rules", []):
        if "Default" in rule:
            yield "rule", ("data", *module.package, *_head_path(rule["Default"]["refr"]))
        elif "Spec" in rule:
            for kind, head in rule["Spec"]["head"].items():
                path = ("data", *module.package, *_head_path(head["refr"]))
                yield ("function" if kind == "Func" else "rule"), path


def test_rules(engine: Any) -> list[tuple[str, str]]:
    """(``pkg/test_x`` path, file) of every ``test_*`` rule, in file order, each once."""
    found: dict[str, str] = {}
    for module in _modules(engine):
        for kind, path in _rule_heads(module):
            if kind == "rule" and path[-1].startswith("test_"):
                found.setdefault("/".join(path[1:]), module.file)
    return list(found.items())


def defined_rules(engine: Any) -> set[str]:
    """Every rule and function the loaded modules define, as ``pkg/sub/rule`` paths."""
    return {"/".join(path[1:]) for module in _modules(engine) for _, path in _rule_heads(module)}


def _calls(node: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, Mapping):
        call = node.get("Call")
        if isinstance(call, Mapping):
            yield call
        for value in node.values():
            yield from _calls(value)
    elif isinstance(node, list):
        for value in node:
            yield from _calls(value)


def _imports(module: _Module) -> dict[str, tuple[str, ...]]:
    """Import alias -> the data path it stands for."""
    aliases = {}
    for item in module.tree.get("imports", []):
        path = _ref_path(item["refr"])
        if not path or path[0] != "data":
            continue
        alias_span = item.get("as")
        alias = module.source[alias_span["start"] : alias_span["end"]].decode() if alias_span else path[-1]
        aliases[alias] = path
    return aliases


def unknown_functions(engine: Any) -> list[str]:
    """``file:line:col: unknown function f`` for every call to a function nobody defines."""
    modules = _modules(engine)
    functions = {path for module in modules for kind, path in _rule_heads(module) if kind == "function"}
    problems = []
    for module in modules:
        aliases = _imports(module)
        for call in _calls(module.tree.get("rules", [])):
            name = _ref_path(call["fcn"])
            if name is None:
                continue
            if name[0] == "data":
                target: tuple[str, ...] | None = name
            elif name[0] in aliases:
                target = (*aliases[name[0]], *name[1:])
            else:
                target = None
            local = ("data", *module.package, *name)
            if target in functions or (target is None and local in functions):
                continue
            if target is None and is_builtin(".".join(name)):
                continue
            span = call.get("span", {})
            where = f"{module.file}:{span.get('line', '?')}:{span.get('col', '?')}"
            problems.append(f"{where}: unknown function {'.'.join(name)}")
    return problems


_BUILTINS: dict[str, bool] = {}
_BUILTINS_LOCK = threading.Lock()


def is_builtin(name: str) -> bool:
    """Whether regorus knows a builtin of this name, asked of a throwaway engine.

    regorus has no list of its builtins; calling one with null arguments fails with "could not
    find function" only when it does not exist (otherwise with a type or arity error)."""
    with _BUILTINS_LOCK:
        if name in _BUILTINS:
            return _BUILTINS[name]
    if not all(_SEGMENT.match(part) for part in name.split(".")):
        return False
    probe = regorus.Engine()
    probe.add_policy("probe.rego", f"package probe\nimport rego.v1\nx := {name}(null)\n")
    try:
        probe.eval_rule("data.probe.x")
        known = True
    except RuntimeError as exc:
        known = "could not find function" not in str(exc)
    with _BUILTINS_LOCK:
        _BUILTINS[name] = known
    return known


# --- policy input and data as JSON -----------------------------------------------------------


def data_problem(data: Mapping[str, Any]) -> str:
    """Where the data holds something Rego cannot take (a date, NaN, a huge number), or ""."""
    try:
        plain_input(data, "data")
    except InputError as exc:
        return str(exc)
    return ""


class InputError(ValueError):
    """The policy input holds something that is not plain JSON."""


def rule_reference(path: str) -> str:
    """``datashare/query/decision`` -> ``data.datashare.query.decision``."""
    parts = path.strip("/").split("/")
    if not path or not all(_SEGMENT.match(part) for part in parts):
        raise InputError("policy path is not a rule path")
    return "data." + ".".join(parts)


def plain_input(value: Any, where: str = "input") -> Any:
    """The input as JSON-shaped Python: mappings become dicts, tuples lists and sets sorted lists
    (as OPA, which only ever sees JSON, would get them); anything else not JSON is refused,
    naming where it sits but not what it holds."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int) and not _I64[0] <= value <= _I64[1]:
        raise InputError(f"{where}: number out of range")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{where}: number is not finite")
    if isinstance(value, int | float):
        return value
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise InputError(f"{where}: keys must be strings")
        return {key: plain_input(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_input(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, set | frozenset):
        items = [plain_input(item, f"{where}[]") for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    kind = type(value).__name__
    hint = "; quote it to make it a string" if kind in ("date", "datetime") else ""
    raise InputError(f"{where}: holds a Python {kind}, which is not JSON data{hint}")
