"""What `gateway policy test` and `gateway policy check` run: the bundle's own Rego tests, and a
review of the bundle before it is deployed (every module compiles, the data holds together).

Both write plain lines to ``out`` and return a process exit code.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from gateway.catalogue import TIME_DIMENSIONS, Catalogue
from gateway.errors import ConfigError
from gateway.policy._bundle import Bundle, load_bundle
from gateway.policy._compile import compile_modules, data_problem, defined_rules, engine_message, test_rules
from gateway.policy._embedded import GATEWAY_RULES

K_FLOOR = 10
"""The consortium's floor on k (DESIGN §9); the policy enforces it too."""

STATUSES = ("draft", "active", "suspended", "revoked")
_AGREEMENT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_REQUIRED = (
    "title",
    "status",
    "valid_from",
    "valid_until",
    "providing_agencies",
    "receiving_agencies",
    "purposes",
    "datasets",
    "measures",
    "dimensions",
    "filters",
)
_LISTS = (
    "providing_agencies",
    "receiving_agencies",
    "purposes",
    "datasets",
    "measures",
    "dimensions",
    "filters",
)
_OPTIONAL = ("legal_basis", "k", "round_to", "max_cells", "max_group_by", "linkage")
_MINIMUMS = {"k": K_FLOOR, "round_to": 1, "max_cells": 1, "max_group_by": 1}


def run_policy_tests(root: Path, out: TextIO) -> int:
    """Evaluate every ``test_*`` rule of the bundle (tests included) with its data.

    One line per test, then "N passed, M failed". Exit code 0 if all pass, 1 if any fails,
    2 if the bundle does not load or compile (the message names file:line)."""
    try:
        bundle = load_bundle(root)
        _, engine = compile_modules(bundle.modules, bundle.data)
    except ConfigError as exc:
        print(f"error: {exc.message}", file=out)
        return 2
    passed = failed = 0
    for rule, file in test_rules(engine):
        try:
            outcome = "PASS" if engine.eval_rule("data." + rule.replace("/", ".")) is True else "FAIL"
            detail = ""
        except RuntimeError as exc:  # a test that errors has failed; say where
            outcome, detail = "FAIL", f": {engine_message(exc)}"
        if outcome == "PASS":
            passed += 1
        else:
            failed += 1
        print(f"{outcome} {rule.replace('/', '.')} ({file}){detail}", file=out)
    if passed + failed == 0:
        print(f"no test_ rules found under {root}", file=out)
    print(f"{passed} passed, {failed} failed", file=out)
    return 1 if failed else 0


def check_bundle(root: Path, out: TextIO) -> int:
    """Review a bundle before deployment; print its revision and return 0, or print every
    problem found (each naming the file and line, or the agreement and key) and return 1."""
    try:
        bundle = load_bundle(root)
    except ConfigError as exc:
        print(f"error: {exc.message}", file=out)
        return 1
    problems = list(bundle_problems(bundle))
    for problem in problems:
        print(f"error: {problem}", file=out)
    if problems:
        print(f"policy bundle {root}: {len(problems)} problem(s); not deployable", file=out)
        return 1
    agreements = bundle.data.get("agreements") or {}
    datasets = (bundle.data.get("catalogue") or {}).get("datasets") or {}
    print(
        f"policy bundle {root}: revision {bundle.revision} "
        f"({len(bundle.modules)} modules, {len(agreements)} agreements, {len(datasets)} datasets)",
        file=out,
    )
    return 0


def bundle_problems(bundle: Bundle) -> Iterator[str]:
    """Everything wrong with the bundle: data first, then modules, each named precisely."""
    catalogue = None
    try:
        catalogue = Catalogue.from_data(bundle.data)
    except ConfigError as exc:
        yield exc.message
    data_problems = list(agreement_problems(bundle.data, catalogue))
    yield from data_problems
    unusable = data_problem(bundle.data)
    if unusable and not any(p.startswith(unusable.split(": ", 1)[0] + ":") for p in data_problems):
        yield unusable
    try:
        # Modules compile without the data when the data itself is unusable, so that both kinds
        # of problem are reported in one run.
        _, engine = compile_modules(bundle.modules, {} if unusable else bundle.data)
    except ConfigError as exc:
        yield exc.message
        return
    for rule in sorted(set(GATEWAY_RULES) - defined_rules(engine)):
        yield f"the bundle defines no rule {rule}, which the gateway consults"


def agreement_problems(data: Mapping[str, Any], catalogue: Catalogue | None) -> Iterator[str]:
    """Schema of data.agreements: required keys and their types, known statuses, ISO dates,
    datasets, agencies, measures and dimensions that exist, and thresholds at their floors."""
    agreements = data.get("agreements")
    if not isinstance(agreements, Mapping):
        yield "data.agreements: must be a mapping of agreement ids to agreements"
        return
    for agreement_id, agreement in agreements.items():
        where = f"data.agreements.{agreement_id}"
        if not isinstance(agreement_id, str) or not _AGREEMENT_ID.match(agreement_id):
            yield f"{where}: agreement ids are lower-case letters, digits and '-'"
        if not isinstance(agreement, Mapping):
            yield f"{where}: must be a mapping"
            continue
        yield from _agreement(where, agreement, catalogue)


def _agreement(where: str, ag: Mapping[str, Any], catalogue: Catalogue | None) -> Iterator[str]:
    yield from _keys(where, ag)
    yield from _scalars(where, ag)
    yield from _terms(where, ag)
    for key in _LISTS:
        if key in ag and not _names(ag[key], allow_empty=key in ("dimensions", "filters")):
            yield f"{where}.{key}: must be a list of unique non-empty names"
    if catalogue is not None:
        yield from _agencies(where, ag, catalogue)
        yield from _datasets(where, ag, catalogue)
        yield from _columns(where, ag, catalogue)
        if "linkage" in ag:
            yield from _linkage(f"{where}.linkage", ag["linkage"], ag, catalogue)


def _keys(where: str, ag: Mapping[str, Any]) -> Iterator[str]:
    for key in _REQUIRED:
        if key not in ag:
            yield f"{where}.{key}: missing"
    for key in ag:
        if key not in _REQUIRED and key not in _OPTIONAL:
            yield f"{where}: unknown key '{key}'"


def _scalars(where: str, ag: Mapping[str, Any]) -> Iterator[str]:
    for key in ("title", "legal_basis"):
        if key in ag and not _text(ag[key]):
            yield f"{where}.{key}: must be non-empty text"
    if "status" in ag and ag["status"] not in STATUSES:
        yield f"{where}.status: must be one of {', '.join(STATUSES)}"
    dates = {key: _date(ag[key]) for key in ("valid_from", "valid_until") if key in ag}
    for key, date in dates.items():
        if date is None:
            yield f"{where}.{key}: must be a quoted 'YYYY-MM-DD' date"
    first, last = dates.get("valid_from"), dates.get("valid_until")
    if first is not None and last is not None and first > last:
        yield f"{where}.valid_until: is before valid_from"


def _terms(where: str, ag: Mapping[str, Any]) -> Iterator[str]:
    for key, minimum in _MINIMUMS.items():
        value = ag.get(key, minimum)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            floor = " (the consortium floor)" if key == "k" else ""
            yield f"{where}.{key}: must be a whole number of at least {minimum}{floor}"


def _agencies(where: str, ag: Mapping[str, Any], catalogue: Catalogue) -> Iterator[str]:
    for key in ("providing_agencies", "receiving_agencies"):
        for agency in _items(ag.get(key)):
            if agency not in catalogue.agencies:
                yield f"{where}.{key}: '{agency}' is not an agency in data.agencies"


def _datasets(where: str, ag: Mapping[str, Any], catalogue: Catalogue) -> Iterator[str]:
    providers = set(_items(ag.get("providing_agencies")))
    for name in _items(ag.get("datasets")):
        dataset = catalogue.dataset(name)
        if dataset is None:
            yield f"{where}.datasets: '{name}' is not a dataset in the catalogue"
        elif providers and dataset.owner not in providers:
            yield (
                f"{where}.datasets: '{name}' is owned by '{dataset.owner}', "
                "which is not among providing_agencies"
            )


def _columns(where: str, ag: Mapping[str, Any], catalogue: Catalogue) -> Iterator[str]:
    """Measures, dimensions and filters must exist in at least one of the agreement's datasets."""
    datasets = [ds for name in _items(ag.get("datasets")) if (ds := catalogue.dataset(name))]
    columns = {d.name for ds in datasets for d in ds.dimensions}
    labels = {"subjects", "records"} | {
        f"{kind}:{m.name}" for ds in datasets for m in ds.measures for kind in ("sum", "mean")
    }
    for label in _items(ag.get("measures")):
        if label not in labels:
            yield f"{where}.measures: '{label}' is not a measure of the agreement's datasets"
    for name in _items(ag.get("dimensions")):
        if name not in columns and name not in TIME_DIMENSIONS:
            yield f"{where}.dimensions: '{name}' is not a dimension of the agreement's datasets"
    for name in _items(ag.get("filters")):
        if name not in columns:
            yield f"{where}.filters: '{name}' is not a dimension of the agreement's datasets"


def _linkage(where: str, linkage: Any, ag: Mapping[str, Any], catalogue: Catalogue) -> Iterator[str]:
    if not isinstance(linkage, list):
        yield f"{where}: must be a list of links"
        return
    covered = set(_items(ag.get("datasets")))
    for index, entry in enumerate(linkage):
        at = f"{where}[{index}]"
        if not isinstance(entry, Mapping):
            yield f"{at}: must be a mapping with datasets and max_days"
            continue
        for key in entry:
            if key not in ("datasets", "max_days", "filters"):
                yield f"{at}: unknown key '{key}'"
        pair = _items(entry.get("datasets"))
        if not _names(entry.get("datasets"), allow_empty=False) or len(pair) != 2:
            yield f"{at}.datasets: must name two different datasets"
        for name in pair:
            if name not in covered:
                yield f"{at}.datasets: '{name}' is not among the agreement's datasets"
        days = entry.get("max_days")
        if not isinstance(days, int) or isinstance(days, bool) or days < 0:
            yield f"{at}.max_days: must be a whole number of days, 0 or more"
        if "filters" in entry:
            yield from _link_filters(f"{at}.filters", entry["filters"], pair, catalogue)


def _link_filters(where: str, filters: Any, pair: list[str], catalogue: Catalogue) -> Iterator[str]:
    if not _names(filters, allow_empty=True):
        yield f"{where}: must be a list of unique non-empty names"
        return
    columns = {d.name for name in pair if (ds := catalogue.dataset(name)) for d in ds.dimensions}
    for name in filters:
        if name not in columns:
            yield f"{where}: '{name}' is not a dimension of the linked datasets"


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _date(value: Any) -> dt.date | None:
    if not isinstance(value, str) or not _DATE.match(value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _names(value: Any, *, allow_empty: bool) -> bool:
    return (
        isinstance(value, list)
        and (allow_empty or bool(value))
        and all(isinstance(v, str) and v for v in value)
        and len(set(value)) == len(value)
    )


def _items(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
