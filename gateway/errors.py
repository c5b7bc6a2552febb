"""The gateway's exceptions: one root, each error knowing its gRPC status code.

Foreign errors (SQLAlchemy, cryptography, the Rego engine, protobuf) are translated where they
enter our code: ``raise StoreError(...) from exc``. Messages name the field at fault in plain
words and never carry a count, a value, a token or a row.

    GatewayError                    INTERNAL
    ├── ConfigError                 (start-up: exit code 2)
    ├── InvalidRequest              INVALID_ARGUMENT
    │   └── BatchRejected           INVALID_ARGUMENT   (signature, seal, header or record)
    ├── Unauthenticated             UNAUTHENTICATED
    ├── PermissionDenied            PERMISSION_DENIED  (carries the policy's reasons)
    │   └── BudgetSpent             PERMISSION_DENIED  (query budget used up at audit time)
    ├── NotFound                    NOT_FOUND
    ├── Conflict                    ALREADY_EXISTS
    └── Unavailable                 UNAVAILABLE
        ├── PolicyEngineError       UNAVAILABLE        (fail closed: deny)
        ├── StoreError              UNAVAILABLE
        └── AuditWriteError         UNAVAILABLE        (no audit entry, no release)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(GatewayError):
    """A settings file, key file or policy bundle is missing or malformed."""


class InvalidRequest(GatewayError):
    """A request field is malformed or out of its domain; `field` names it."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class BatchRejected(InvalidRequest):
    """A pushed batch failed verification, opening or validation; nothing of it was stored."""


class Unauthenticated(GatewayError):
    """No usable client certificate, or one that names no known principal."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(GatewayError):
    """The policy denied the request; `reasons` are plain words the caller can act on."""

    code = grpc.StatusCode.PERMISSION_DENIED

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reasons = tuple(reasons) or ("denied by policy",)
        super().__init__("; ".join(self.reasons))


class BudgetSpent(PermissionDenied):
    """An agreement's query budget for the period was used up by the time an allowed answer was
    to be audited (a racing query took the last unit): nothing was written or released.
    ``usage`` is the count as re-read under the audit lock, for the policy to decide again."""

    def __init__(self, usage: Mapping[str, Any]) -> None:
        super().__init__(("the agreement's query budget for this period is used up",))
        self.usage = dict(usage)
        self.quota: object = None  # the quota found spent, when several were checked


class NotFound(GatewayError):
    code = grpc.StatusCode.NOT_FOUND


class Conflict(GatewayError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Unavailable(GatewayError):
    code = grpc.StatusCode.UNAVAILABLE


class PolicyEngineError(Unavailable):
    """The policy engine failed or answered nothing usable; the request is denied."""


class StoreError(Unavailable):
    """The database failed; nothing was written."""


class AuditWriteError(Unavailable):
    """The audit entry could not be written, so nothing is released."""
