"""The on-prem data-sharing agent (DESIGN §3): map ▶ validate ▶ pseudonymise ▶ coarsen ▶ seal ▶ push.

Its own deployable: it never imports `gateway`; agents/_pb is its copy of the wire contract.

    from agents import load_config, push
    summary = push(load_config(Path("agent-health.toml")))
"""

from agents._config import AgentConfig, load_config
from agents._contract import Contract, load_cached_contract
from agents._keys import FileKeySource, KeySource, SigningKey
from agents._mapping import Mapper, Pseudonymiser, build_mapper, normalise_identifier
from agents._pipeline import Progress, PushSummary, dry_run, push
from agents._push import GatewayClient, TlsMaterial
from agents._seal import Sealer, batch_id, hpke_info, signed_message
from agents._source import BadRow, CsvSource, RecordSource
from agents.errors import (
    AgentError,
    ConfigError,
    PermanentPushError,
    SourceError,
    TransientPushError,
)

__all__ = [
    "AgentConfig",
    "AgentError",
    "BadRow",
    "ConfigError",
    "Contract",
    "CsvSource",
    "FileKeySource",
    "GatewayClient",
    "KeySource",
    "Mapper",
    "PermanentPushError",
    "Progress",
    "Pseudonymiser",
    "PushSummary",
    "RecordSource",
    "Sealer",
    "SigningKey",
    "SourceError",
    "TlsMaterial",
    "TransientPushError",
    "batch_id",
    "build_mapper",
    "dry_run",
    "hpke_info",
    "load_cached_contract",
    "load_config",
    "normalise_identifier",
    "push",
    "signed_message",
]
