"""The bundle's data files against their schemas (gateway/policy/schemas/*.schema.json), then
the references between them, each problem named by file, line and data path.

The schemas ship with the gateway, not with the bundle: the floors they hold (k of at least 10)
are the gateway's, so a bundle cannot bring a weaker schema of its own. JSON Schema says what
each file may hold; what no schema can say (an agreement naming a dataset the catalogue lacks,
a measure none of its datasets has) is checked here in Python after it.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from gateway.catalogue import TIME_DIMENSIONS, Catalogue, Dataset
from gateway.errors import ConfigError

SCHEMA_KEYS = ("agencies", "purposes", "catalogue", "agreements")
"""Top-level data documents every gateway bundle holds, each with its schema."""

OPTIONAL_SCHEMA_KEYS = ("auditors",)
"""Documents a bundle may leave out (auditors: each agency then audits only itself); checked
against their schema when present."""

DataPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    path: DataPath  # from the data root: ("agreements", "ag-1", "k")
    message: str

    @property
    def dotted(self) -> str:
        text = "data"
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else f".{part}"
        return text


@functools.cache
def schema(key: str) -> dict[str, Any]:
    text = resources.files("gateway.policy").joinpath("schemas", f"{key}.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@functools.cache
def _validator(key: str) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema(key))
    cls.check_schema(schema(key))
    return cls(schema(key))


# --- locating a problem: data path -> file and line ------------------------------------------


class Locator:
    """Maps a data path to ``file:line`` through the YAML node marks of the bundle's data files."""

    def __init__(self, root: Path, data_files: Mapping[str, tuple[str, ...]]) -> None:
        self._root = root
        self._files = sorted(data_files.items(), key=lambda item: -len(item[1]))
        self._lines: dict[str, dict[DataPath, int]] = {}

    def where(self, path: DataPath) -> str:
        for rel, parts in self._files:
            if tuple(path[: len(parts)]) == parts:
                line = self._line(rel, path[len(parts) :])
                return f"{rel}:{line}" if line else rel
        return ""

    def _line(self, rel: str, inner: DataPath) -> int:
        lines = self._lines.get(rel)
        if lines is None:
            lines = self._lines[rel] = _node_lines(self._root / rel)
        for end in range(len(inner), -1, -1):
            if inner[:end] in lines:
                return lines[inner[:end]]
        return 0

    def format(self, problem: Problem) -> str:
        where = self.where(problem.path)
        prefix = f"{where}: " if where else ""
        return f"{prefix}{problem.dotted}: {problem.message}"


def _node_lines(path: Path) -> dict[DataPath, int]:
    """Line (1-based) of every key and item of a YAML (or JSON) file; {} if it cannot be read."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    lines: dict[DataPath, int] = {}

    def walk(node: yaml.Node | None, at: DataPath) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                here = (*at, str(key.value))
                lines[here] = key.start_mark.line + 1
                walk(value, here)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[(*at, index)] = item.start_mark.line + 1
                walk(item, (*at, index))

    if node is not None:
        lines[()] = node.start_mark.line + 1
        walk(node, ())
    return lines


# --- the checks ------------------------------------------------------------------------------


def data_problems(data: Mapping[str, Any]) -> list[Problem]:
    """Everything wrong with the bundle's data: schema problems first, then broken references
    (checked only between documents that passed their schema)."""
    problems: list[Problem] = []
    valid: set[str] = set()
    for key in SCHEMA_KEYS:
        if key not in data:
            problems.append(Problem((key,), f"missing (the bundle needs {key}/data.yaml)"))
            continue
        found = list(_schema_problems(key, data[key]))
        problems.extend(found)
        if not found:
            valid.add(key)
    for key in OPTIONAL_SCHEMA_KEYS:
        if key in data:
            found = list(_schema_problems(key, data[key]))
            problems.extend(found)
            if not found:
                valid.add(key)
    if {"agencies", "catalogue"} <= valid:
        try:
            catalogue = Catalogue.from_data(data)
        except ConfigError as exc:
            problems.append(Problem(("catalogue",), exc.message))
            return problems
        if "agreements" in valid and "purposes" in valid:
            problems.extend(_agreement_references(data["agreements"], data["purposes"], catalogue))
        if "auditors" in valid:
            problems.extend(_auditor_references(data["auditors"], catalogue))
    return problems


def _schema_problems(key: str, document: Any) -> Iterator[Problem]:
    seen: set[DataPath] = set()
    for error in sorted(_validator(key).iter_errors(document), key=lambda e: list(map(str, e.absolute_path))):
        at: DataPath = (key, *error.absolute_path)
        for path, message in _explain(at, error):
            if path not in seen:  # the first problem at a path says enough
                seen.add(path)
                yield Problem(path, message)


def _explain(at: DataPath, error: jsonschema.ValidationError) -> Iterator[tuple[DataPath, str]]:
    schema_node: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    instance: Any = error.instance
    if error.validator == "required" and isinstance(instance, Mapping):
        for name in schema_node.get("required", []):
            if name not in instance:
                yield (*at, name), "missing"
    elif error.validator == "additionalProperties" and schema_node.get("additionalProperties") is False:
        allowed = set(schema_node.get("properties", {}))
        for name in instance:
            if name not in allowed:
                yield at, f"unknown key '{name}'"
    elif error.validator == "propertyNames":
        yield at, str(schema_node.get("propertyNames", {}).get("x-message") or error.message)
    else:
        yield at, str(schema_node.get("x-message") or _plain(error))


def _plain(error: jsonschema.ValidationError) -> str:
    if isinstance(error.instance, dt.date):
        return "must be a quoted 'YYYY-MM-DD' date"
    return error.message


def _date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _agreement_references(
    agreements: Mapping[str, Any], purposes: Mapping[str, Any], catalogue: Catalogue
) -> Iterator[Problem]:
    for agreement_id, ag in agreements.items():
        at: DataPath = ("agreements", agreement_id)
        dates = {key: _date(ag[key]) for key in ("valid_from", "valid_until")}
        for key, date in dates.items():
            if date is None:
                yield Problem((*at, key), "must be a quoted 'YYYY-MM-DD' date that exists")
        first, last = dates["valid_from"], dates["valid_until"]
        if first is not None and last is not None and first > last:
            yield Problem((*at, "valid_until"), "is before valid_from")
        for key in ("providing_agencies", "receiving_agencies"):
            for i, agency in enumerate(ag[key]):
                if agency not in catalogue.agencies:
                    yield Problem((*at, key, i), f"'{agency}' is not an agency in data.agencies")
        for i, purpose in enumerate(ag["purposes"]):
            if purpose not in purposes:
                yield Problem((*at, "purposes", i), f"'{purpose}' is not a purpose in data.purposes")
        yield from _dataset_references(at, ag, catalogue)


def _auditor_references(auditors: Mapping[str, Any], catalogue: Catalogue) -> Iterator[Problem]:
    for agency, scope in auditors.items():
        if agency not in catalogue.agencies:
            yield Problem(("auditors", agency), f"'{agency}' is not an agency in data.agencies")
        sees = scope["sees"]
        for i, seen in enumerate(sees if isinstance(sees, list) else []):
            if seen not in catalogue.agencies:
                yield Problem(("auditors", agency, "sees", i), f"'{seen}' is not an agency in data.agencies")


def _dataset_references(at: DataPath, ag: Mapping[str, Any], catalogue: Catalogue) -> Iterator[Problem]:
    providers = set(ag["providing_agencies"])
    datasets = []
    for i, name in enumerate(ag["datasets"]):
        dataset = catalogue.dataset(name)
        if dataset is None:
            yield Problem((*at, "datasets", i), f"'{name}' is not a dataset in the catalogue")
        elif dataset.owner not in providers:
            yield Problem(
                (*at, "datasets", i),
                f"'{name}' is owned by '{dataset.owner}', which is not among providing_agencies",
            )
        else:
            datasets.append(dataset)
    yield from _column_references(at, ag, datasets)
    for i, link in enumerate(ag.get("linkage", [])):
        yield from _link_references((*at, "linkage", i), link, ag, catalogue)


def _column_references(at: DataPath, ag: Mapping[str, Any], datasets: list[Dataset]) -> Iterator[Problem]:
    """Measures, dimensions, filters and combinations must exist in the agreement's datasets."""
    columns = {d.name for ds in datasets for d in ds.dimensions}
    labels = {"subjects", "records"} | {
        f"{kind}:{m.name}" for ds in datasets for m in ds.measures for kind in ("sum", "mean")
    }
    for i, label in enumerate(ag["measures"]):
        if label not in labels:
            yield Problem((*at, "measures", i), f"'{label}' is not a measure of the agreement's datasets")
    for i, name in enumerate(ag["dimensions"]):
        if name not in columns and name not in TIME_DIMENSIONS:
            yield Problem((*at, "dimensions", i), f"'{name}' is not a dimension of the agreement's datasets")
    for i, name in enumerate(ag["filters"]):
        if name not in columns:
            yield Problem((*at, "filters", i), f"'{name}' is not a dimension of the agreement's datasets")
    for i, combination in enumerate(ag.get("forbidden_combinations", [])):
        for j, name in enumerate(combination):
            if name not in ag["dimensions"]:
                yield Problem(
                    (*at, "forbidden_combinations", i, j), f"'{name}' is not among the agreement's dimensions"
                )


def _link_references(
    at: DataPath, link: Mapping[str, Any], ag: Mapping[str, Any], catalogue: Catalogue
) -> Iterator[Problem]:
    pair: Sequence[str] = link["datasets"]
    for j, name in enumerate(pair):
        if name not in ag["datasets"]:
            yield Problem((*at, "datasets", j), f"'{name}' is not among the agreement's datasets")
    columns = {d.name for name in pair if (ds := catalogue.dataset(name)) for d in ds.dimensions}
    for j, name in enumerate(link.get("filters", [])):
        if name not in columns:
            yield Problem((*at, "filters", j), f"'{name}' is not a dimension of the linked datasets")
