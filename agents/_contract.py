"""The dataset contract as the agent sees it: fetched from the gateway, cached in state_dir.

The gateway is the authority on contracts (they live with its policies); the agent keeps the
last one it received as JSON so commands that do not talk to the gateway can still check and
preview a mapping offline.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import json_format

from agents._pb import common_pb2
from agents.errors import ConfigError

GRANULARITIES = ("day", "month")


@dataclass(frozen=True)
class ContractDimension:
    name: str
    domain: tuple[str, ...]


@dataclass(frozen=True)
class ContractMeasure:
    name: str
    min: float
    max: float


@dataclass(frozen=True)
class Contract:
    dataset: str
    owner_agency: str
    version: int
    granularity: str
    dimensions: tuple[ContractDimension, ...]
    measures: tuple[ContractMeasure, ...]

    def column_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions) + tuple(m.name for m in self.measures)

    @classmethod
    def from_proto(cls, message: common_pb2.DatasetContract) -> Contract:
        """Check what the gateway sent; a contract the agent cannot honour is a ConfigError."""
        where = f"contract for dataset {message.dataset or '(unnamed)'}"
        if message.version < 1:
            raise ConfigError(f"{where}: version must be positive")
        if message.event_date_granularity not in GRANULARITIES:
            raise ConfigError(f"{where}: event_date_granularity must be one of {', '.join(GRANULARITIES)}")
        dimensions: list[ContractDimension] = []
        measures: list[ContractMeasure] = []
        seen: set[str] = set()
        for column in message.columns:
            if not column.name or column.name in seen:
                raise ConfigError(f"{where}: column names must be present and unique")
            seen.add(column.name)
            if column.kind == common_pb2.COLUMN_KIND_DIMENSION:
                domain = tuple(column.domain)
                if not domain or len(set(domain)) != len(domain) or not all(domain):
                    raise ConfigError(f"{where}: {column.name}: domain must be non-empty, unique values")
                dimensions.append(ContractDimension(column.name, domain))
            elif column.kind == common_pb2.COLUMN_KIND_MEASURE:
                if not (math.isfinite(column.min) and math.isfinite(column.max) and column.min < column.max):
                    raise ConfigError(f"{where}: {column.name}: min and max must be finite, min below max")
                measures.append(ContractMeasure(column.name, column.min, column.max))
            else:
                raise ConfigError(f"{where}: {column.name}: unknown column kind")
        return cls(
            dataset=message.dataset,
            owner_agency=message.owner_agency,
            version=message.version,
            granularity=message.event_date_granularity,
            dimensions=tuple(dimensions),
            measures=tuple(measures),
        )


def cache_path(state_dir: Path, dataset: str) -> Path:
    return state_dir / f"contract-{dataset}.json"


def save_contract(state_dir: Path, message: common_pb2.DatasetContract) -> Path:
    """Write the contract JSON atomically (temp file + rename), so a crash leaves the old one."""
    path = cache_path(state_dir, message.dataset)
    text = json_format.MessageToJson(message, preserving_proto_field_name=True, indent=2, sort_keys=True)
    tmp: Path | None = None
    try:
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=state_dir, delete=False, prefix=".contract-", suffix=".tmp"
        ) as handle:
            tmp = Path(handle.name)
            handle.write(text + "\n")
        tmp.replace(path)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write the contract cache ({exc.strerror or exc})") from exc
    return path


def load_cached_contract(state_dir: Path, dataset: str) -> common_pb2.DatasetContract:
    path = cache_path(state_dir, dataset)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{path}: no cached contract; run 'agent push' once while the gateway is up"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the contract cache ({exc.strerror or exc})") from exc
    try:
        message = json_format.Parse(text, common_pb2.DatasetContract())
    except json_format.ParseError as exc:
        raise ConfigError(f"{path}: the contract cache is not a valid contract") from exc
    if message.dataset != dataset:
        raise ConfigError(f"{path}: the contract cache is for another dataset")
    return message


def ensure_state_dir(state_dir: Path) -> None:
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"{state_dir}: cannot create the state directory ({exc.strerror or exc})") from exc
    if not os.access(state_dir, os.W_OK):
        raise ConfigError(f"{state_dir}: the state directory is not writable")
