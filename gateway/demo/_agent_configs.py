"""The two demo agents' configs, mapping the synthetic exports to the catalogue's contracts.

`write_agent_configs` writes ``agent-metro-police.toml`` and ``agent-health.toml`` into the
development PKI folder made by ``gateway init``, with every path relative to that folder so the
folder can be moved as a whole. It only writes text: the agent package owns the format (see
agents/_config.py) and is never imported here.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.demo._synthetic import (
    ED_DOB_FORMAT,
    ED_FILE,
    ED_SEX,
    ED_TIME_FORMAT,
    OFFENCE_LOOKUP,
    POLICE_DOB_FORMAT,
    POLICE_FILE,
    POLICE_SEX,
    POLICE_TIME_FORMAT,
    POSTCODE_LOOKUP,
    TRIAGE_LOOKUP,
)
from gateway.errors import ConfigError


@dataclass(frozen=True)
class _Agent:
    agency: str
    dataset: str
    data_file: str
    fields: tuple[tuple[str, Mapping[str, object]], ...]


def _sex_map(exported: Mapping[str, str]) -> dict[str, str]:
    """Exported spelling -> contract value (F, M, X); an empty cell means not recorded."""
    return {**{spelling: value for value, spelling in exported.items()}, "": "X"}


AGENTS = (
    _Agent(
        agency="metro-police",
        dataset="police_incidents",
        data_file=POLICE_FILE,
        fields=(
            ("subject", {"transform": "pseudonymise", "columns": ["national_id"]}),
            ("event_date", {"transform": "date", "column": "reported_at", "format": POLICE_TIME_FORMAT}),
            ("age_band", {"transform": "age_band", "column": "date_of_birth", "format": POLICE_DOB_FORMAT}),
            ("sex", {"transform": "map", "column": "sex", "map": _sex_map(POLICE_SEX)}),
            ("district", {"transform": "lookup", "column": "incident_postcode", "file": POSTCODE_LOOKUP}),
            ("incident_type", {"transform": "lookup", "column": "offence_code", "file": OFFENCE_LOOKUP}),
        ),
    ),
    _Agent(
        agency="health",
        dataset="ed_visits",
        data_file=ED_FILE,
        fields=(
            ("subject", {"transform": "pseudonymise", "columns": ["patient_national_id"]}),
            ("event_date", {"transform": "date", "column": "arrival_time", "format": ED_TIME_FORMAT}),
            ("age_band", {"transform": "age_band", "column": "date_of_birth", "format": ED_DOB_FORMAT}),
            ("sex", {"transform": "map", "column": "sex", "map": _sex_map(ED_SEX)}),
            ("district", {"transform": "lookup", "column": "home_postcode", "file": POSTCODE_LOOKUP}),
            ("presentation", {"transform": "lookup", "column": "triage_code", "file": TRIAGE_LOOKUP}),
            (
                "length_of_stay_hours",
                {
                    "transform": "hours_between",
                    "columns": ["arrival_time", "departure_time"],
                    "format": ED_TIME_FORMAT,
                },
            ),
        ),
    ),
)


def write_agent_configs(
    pki_root: Path,
    data_dir: Path,
    *,
    address: str = "127.0.0.1:50051",
    server_name: str | None = None,
    batch_size: int = 10000,  # the agent's own default (agents/_config.py DEFAULT_BATCH_SIZE)
) -> dict[str, Path]:
    """Write one agent config per demo agency into pki_root; returns {agency: config path}.

    Existing configs are replaced (each atomically), so re-running a demo over the same folder
    picks up a new address.
    """
    root = Path(pki_root).absolute()
    data = Path(data_dir).absolute()
    written: dict[str, Path] = {}
    for agent in AGENTS:
        path = root / f"agent-{agent.agency}.toml"
        _write_atomic(
            path,
            agent_config_text(
                agent, root, data, address=address, server_name=server_name, batch_size=batch_size
            ),
        )
        written[agent.agency] = path
    return written


def agent_config_text(
    agent: _Agent, root: Path, data: Path, *, address: str, server_name: str | None, batch_size: int
) -> str:
    def rel(path: Path) -> str:
        return os.path.relpath(path, root)

    agent_dir = f"agents/{agent.agency}"
    gateway: dict[str, object] = {"address": address}
    if server_name:
        gateway["server_name"] = server_name
    gateway.update(
        {
            "ca": "ca/ca.pem",
            "cert": f"{agent_dir}/agent.pem",
            "key": f"{agent_dir}/agent.key",
            "hpke_public_key": "gateway/hpke.pub",
            "timeout_s": 30,
            "retries": 5,
        }
    )
    tables: list[tuple[str, Mapping[str, object]]] = [
        (
            "agent",
            {
                "agency": agent.agency,
                "dataset": agent.dataset,
                "batch_size": batch_size,
                "state_dir": f"state/{agent.agency}",
            },
        ),
        ("gateway", gateway),
        (
            "keys",
            {
                "linkage_key": "agents/linkage.key",
                "signing_key": f"{agent_dir}/signing.key",
                "signing_key_id": f"{agent.agency}-1",
            },
        ),
        (
            "source",
            {"type": "csv", "path": rel(data / agent.data_file), "delimiter": ",", "encoding": "utf-8"},
        ),
    ]
    for name, spec in agent.fields:
        resolved = dict(spec)
        if "file" in resolved:
            resolved["file"] = rel(data / str(resolved["file"]))
        tables.append((f"fields.{name}", resolved))
    header = (
        f"# Agent config for {agent.agency} (dataset {agent.dataset}), written by the gateway demo.\n"
        "# Paths are relative to this file's folder. Run: agent push --config <this file>\n"
    )
    return header + "\n".join(_table(name, values) for name, values in tables)


def _table(name: str, values: Mapping[str, object]) -> str:
    lines = [f"[{name}]"]
    lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    # JSON strings, numbers and arrays of strings are valid TOML; tables become inline tables
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _write_atomic(path: Path, text: str) -> None:
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as handle:
            tmp = Path(handle.name)
            handle.write(text)
        tmp.chmod(0o644)
        tmp.replace(path)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write the agent config ({exc.strerror})") from exc
