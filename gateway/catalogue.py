"""The dataset catalogue (DESIGN §5): typed, frozen contracts built from the policy bundle's data.

The same data files feed the Rego engine (as ``data.catalogue`` and ``data.agencies``) and this
module, so the policy and the gateway's validation and storage can never disagree on a contract.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway._pb import common_pb2
from gateway.errors import ConfigError

TIME_DIMENSIONS = ("month", "quarter", "year")
"""Pseudo-dimensions derived from the event date; no dataset may declare a column so named."""

GRANULARITIES = ("day", "month")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_RESERVED = {*TIME_DIMENSIONS, "subject", "event_date", "event_day", "event_month", "batch_id"}


@dataclass(frozen=True)
class Dimension:
    name: str
    domain: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class Measure:
    name: str
    min: float
    max: float
    description: str = ""

    def clamp(self, value: float) -> float:
        return min(max(value, self.min), self.max)


@dataclass(frozen=True)
class Dataset:
    name: str
    owner: str
    version: int
    title: str
    description: str
    granularity: str
    dimensions: tuple[Dimension, ...]
    measures: tuple[Measure, ...]

    def dimension(self, name: str) -> Dimension | None:
        return next((d for d in self.dimensions if d.name == name), None)

    def measure(self, name: str) -> Measure | None:
        return next((m for m in self.measures if m.name == name), None)

    def to_proto(self) -> common_pb2.DatasetContract:
        columns = [
            common_pb2.ContractColumn(
                name=d.name, kind=common_pb2.COLUMN_KIND_DIMENSION, domain=d.domain, description=d.description
            )
            for d in self.dimensions
        ] + [
            common_pb2.ContractColumn(
                name=m.name,
                kind=common_pb2.COLUMN_KIND_MEASURE,
                min=m.min,
                max=m.max,
                description=m.description,
            )
            for m in self.measures
        ]
        return common_pb2.DatasetContract(
            dataset=self.name,
            owner_agency=self.owner,
            version=self.version,
            event_date_granularity=self.granularity,
            columns=columns,
            description=self.description or self.title,
        )


@dataclass(frozen=True)
class Catalogue:
    datasets: Mapping[str, Dataset]
    agencies: frozenset[str]

    def dataset(self, name: str) -> Dataset | None:
        return self.datasets.get(name)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Catalogue:
        """Build from the bundle's data document; ConfigError names the path at fault."""
        agencies = data.get("agencies")
        if not isinstance(agencies, Mapping) or not agencies:
            raise ConfigError("data.agencies: must be a non-empty mapping of agency ids")
        for agency in agencies:
            _check_name(f"data.agencies.{agency}", agency)
        raw = _mapping(data.get("catalogue", {}).get("datasets"), "data.catalogue.datasets")
        datasets = {name: _dataset(name, spec, frozenset(agencies)) for name, spec in raw.items()}
        return cls(datasets=datasets, agencies=frozenset(agencies))


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be a mapping")
    return value


def _check_name(where: str, name: object) -> None:
    if not isinstance(name, str) or not _NAME.match(name.replace("-", "_")):
        raise ConfigError(f"{where}: must be lower-case letters, digits, '_' or '-'")


def _dataset(name: str, spec: Any, agencies: frozenset[str]) -> Dataset:
    where = f"data.catalogue.datasets.{name}"
    _check_name(where, name)
    if "-" in name:
        raise ConfigError(f"{where}: dataset names may not contain '-'")
    spec = _mapping(spec, where)
    owner = spec.get("owner")
    if owner not in agencies:
        raise ConfigError(f"{where}.owner: must name an agency in data.agencies")
    version = spec.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"{where}.version: must be a positive whole number")
    granularity = spec.get("event_date_granularity", "day")
    if granularity not in GRANULARITIES:
        raise ConfigError(f"{where}.event_date_granularity: must be one of {', '.join(GRANULARITIES)}")
    dimensions = []
    for dim_name, dim in _mapping(spec.get("dimensions", {}), f"{where}.dimensions").items():
        dim_where = f"{where}.dimensions.{dim_name}"
        _check_column(dim_where, dim_name)
        spec_dim = _mapping(dim, dim_where)
        domain = spec_dim.get("domain")
        if not isinstance(domain, list) or not domain or not all(isinstance(v, str) and v for v in domain):
            raise ConfigError(f"{dim_where}.domain: must be a non-empty list of non-empty strings")
        if len(set(domain)) != len(domain):
            raise ConfigError(f"{dim_where}.domain: values must be unique")
        dimensions.append(Dimension(dim_name, tuple(domain), str(spec_dim.get("description", ""))))
    measures = []
    for m_name, m in _mapping(spec.get("measures", {}) or {}, f"{where}.measures").items():
        m_where = f"{where}.measures.{m_name}"
        _check_column(m_where, m_name)
        spec_m = _mapping(m, m_where)
        low, high = spec_m.get("min"), spec_m.get("max")
        if not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)
        ):
            raise ConfigError(f"{m_where}: min and max must be finite numbers")
        if low >= high:  # type: ignore[operator]
            raise ConfigError(f"{m_where}: min must be below max")
        measures.append(Measure(m_name, float(low), float(high), str(spec_m.get("description", ""))))  # type: ignore[arg-type]
    if not dimensions:
        raise ConfigError(f"{where}.dimensions: a dataset needs at least one dimension")
    return Dataset(
        name=name,
        owner=owner,
        version=version,
        title=str(spec.get("title", name)),
        description=str(spec.get("description", "")),
        granularity=granularity,
        dimensions=tuple(dimensions),
        measures=tuple(measures),
    )


def _check_column(where: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}: column names are lower-case letters, digits and '_'")
    if name in _RESERVED:
        raise ConfigError(f"{where}: '{name}' is reserved")
