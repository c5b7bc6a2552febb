"""Audit log entries (DESIGN §10): what is written for every decision, allowed or denied."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["allow", "deny", "error"]
GENESIS_HASH = "0" * 64
# 1: the fields up to ``result``. 2: adds ``schema_version``, the mask's ``erased`` and
# ``masked`` pointers and the per-field ``digests`` (so verify can name an edited column).
# An entry's hash covers exactly the fields of its own version (gateway.audit._chain).
SCHEMA_VERSION = 2


@dataclass(frozen=True)
class AuditDraft:
    """An entry before the store chains it. ``input`` is already masked: no tokens, no rows."""

    decision_id: str
    timestamp: str  # RFC 3339, UTC, microseconds
    path: str  # the policy rule consulted
    principal: str  # SPIFFE id, or "unauthenticated"
    agency: str
    action: str  # "ingest", "query", "list_datasets", "audit.list", ...
    outcome: Outcome
    reasons: tuple[str, ...] = ()
    agreement_id: str = ""
    purpose: str = ""
    policy_revision: str = ""
    query_fingerprint: str = ""
    cells_released: int = 0
    cells_withheld: int = 0
    latency_ms: float = 0.0
    input: Mapping[str, Any] = field(default_factory=dict)
    result: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    erased: tuple[str, ...] = ()  # JSON pointers the log mask removed (OPA's ``erased``)
    masked: tuple[str, ...] = ()  # JSON pointers the log mask replaced (OPA's ``masked``)
    # field name -> short digest of its canonical value, set by the store (gateway.audit._chain)
    digests: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEntry(AuditDraft):
    """A chained entry: ``hash`` = SHA-256 over the canonical encoding of every other field."""

    seq: int = 0
    prev_hash: str = GENESIS_HASH
    hash: str = ""


@dataclass(frozen=True)
class AuditScope:
    """The entries an auditor may read (policies/datashare/audit.rego): those whose principal's
    agency is in ``agencies``, or made under one of ``agreements``."""

    agencies: frozenset[str] = frozenset()
    agreements: frozenset[str] = frozenset()


@dataclass(frozen=True)
class AuditFilter:
    since: str = ""
    until: str = ""
    principal: str = ""
    agency: str = ""
    agreement_id: str = ""
    outcome: str = ""
    decision_id: str = ""
    limit: int = 0
    scope: AuditScope | None = None  # None: the whole log (an oversight body, verify)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries_checked: int
    first_bad_seq: int = 0
    problem: str = ""
    head_hash: str = GENESIS_HASH
    first_bad_decision_id: str = ""  # the named entry's decision id, when it is there to read
    checkpoints_checked: int = 0
    anchor_seq: int = 0  # verified from this signed anchor (0: from the genesis)
    head_seq: int = 0
    edited_columns: tuple[str, ...] = ()  # for an edited entry, the columns whose digest differs
