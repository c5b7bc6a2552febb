"""The agent's exceptions: one root, each error knowing the process exit code it ends with.

Foreign errors (OSError, tomllib, cryptography, gRPC) are translated where they enter our code:
``raise SourceError(...) from exc``. Messages name the file, key or field at fault in plain
words and never carry a record value, an identifier, a pseudonym or a row.

    AgentError                      exit 1
    ├── ConfigError                 exit 2  (config file, key file, lookup file, contract mismatch)
    │   ├── StateBusyError          exit 2  (another agent process holds the state; the service
    │   │                                    retries this one later)
    │   └── StateError              exit 2  (the agent's state file cannot be read or written)
    ├── SourceError                 exit 3  (the record source cannot be opened or read, for now)
    │   └── SourceChangedError      exit 3  (what was already read changed: rewritten export,
    │                                        repeated watermark; retrying cannot fix it)
    ├── PermanentPushError          exit 4  (the gateway refused: INVALID_ARGUMENT,
    │                                        PERMISSION_DENIED, UNAUTHENTICATED, ALREADY_EXISTS, ...)
    └── TransientPushError          exit 5  (the gateway stayed unreachable or busy after retries)
"""

from __future__ import annotations


class AgentError(Exception):
    """Root of every error the agent raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(AgentError):
    """A config, key or lookup file is missing or malformed, or does not fit the contract."""

    exit_code = 2


class SourceError(AgentError):
    """The record source (CSV file, later a database) cannot be opened or read."""

    exit_code = 3


class StateBusyError(ConfigError):
    """Another agent process (a manual push beside the service) is using the same state_dir."""


class StateError(ConfigError):
    """The agent's state file (spool, positions, rejects) cannot be read or written."""


class SourceChangedError(SourceError):
    """The part of the source already read is no longer what it was; a retry would not help."""


class PermanentPushError(AgentError):
    """The gateway refused a request for a reason retrying cannot fix; carries its message."""

    exit_code = 4


class TransientPushError(AgentError):
    """The gateway stayed unavailable, overloaded or too slow for every allowed retry."""

    exit_code = 5
