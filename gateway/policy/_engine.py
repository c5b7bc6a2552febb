"""The policy engine interface (OPAL-style): one small protocol, engines chosen by configuration.

An engine evaluates a decision rule of the loaded bundle against an input document and returns
the rule's value. Undefined, a non-object result, an engine error or a timeout all become a
deny: callers get a ``PolicyDecision`` with ``allow=False`` and ``error`` set, never an exception
that could be mistaken for an allow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# The decision rules the gateway consults (DESIGN §8). Paths are OPA data paths.
INGEST_RULE = "datashare/ingest/decision"
QUERY_RULE = "datashare/query/decision"
AUDIT_RULE = "datashare/audit/decision"
LISTING_RULE = "datashare/listing/datasets"
# what of each decision the audit log must not store (as OPA's system.log.mask; gateway.audit._mask)
LOG_MASK_RULE = "datashare/log/mask"


@dataclass(frozen=True)
class PolicyDecision:
    """What the policy said. ``result`` is the raw decision document, for the audit log."""

    allow: bool
    reasons: tuple[str, ...]
    revision: str
    path: str
    result: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None  # set when the engine failed; allow is then always False
    failure: str = ""  # with error: a short fixed kind ("timeout", "undefined", ...) to count by

    @property
    def agreement(self) -> Mapping[str, Any]:
        value = self.result.get("agreement")
        return value if isinstance(value, Mapping) else {}

    @property
    def obligations(self) -> Mapping[str, Any]:
        value = self.result.get("obligations")
        return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class Failure:
    """Why an engine could not decide: ``kind`` is a fixed word (a metric label), ``message``
    one line for the log and the audit entry that never carries an input value."""

    kind: str
    message: str


def decision_of(path: str, revision: str, value: Any) -> PolicyDecision | Failure:
    """The decision a rule's value makes, or the Failure that makes it a deny: every engine
    holds the decision document to the same shape (DESIGN §8), so engines agree on what counts."""
    if value is None:
        return Failure("undefined", "policy result is undefined")
    if not isinstance(value, dict) or not isinstance(value.get("allow"), bool):
        return Failure("malformed_result", "policy result is not an object with a boolean allow")
    reasons = value.get("reasons", [])
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        return Failure("malformed_result", "policy result reasons are not a list of strings")
    allow: bool = value["allow"]
    if allow and reasons:
        return Failure("malformed_result", "policy result allows and gives reasons to deny")
    if not allow and not reasons:
        reasons = ["denied by policy"]
    return PolicyDecision(allow=allow, reasons=tuple(reasons), revision=revision, path=path, result=value)


class PolicyEngine(Protocol):
    @property
    def revision(self) -> str:
        """The bundle revision every decision of this engine is stamped with."""
        ...

    def decide(self, path: str, input_doc: Mapping[str, Any]) -> PolicyDecision:
        """Evaluate the decision document at ``path``; fail closed on anything unexpected."""
        ...

    def query(self, path: str, input_doc: Mapping[str, Any]) -> Any:
        """The raw value of the rule at ``path`` (for listings); raises PolicyEngineError."""
        ...
