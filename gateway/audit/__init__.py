"""The audit log (DESIGN §10): entry types and the hash chain that makes tampering show."""

from gateway.audit._budget import BudgetPeriod, QueryBudget, Quota, budget_period, query_budgets
from gateway.audit._chain import CheckpointCheck, canonical_bytes, chain_hash, verify_chain
from gateway.audit._types import (
    GENESIS_HASH,
    AuditDraft,
    AuditEntry,
    AuditFilter,
    AuditScope,
    Outcome,
    VerifyResult,
)

__all__ = [
    "GENESIS_HASH",
    "AuditDraft",
    "AuditEntry",
    "AuditFilter",
    "AuditScope",
    "BudgetPeriod",
    "CheckpointCheck",
    "Outcome",
    "QueryBudget",
    "Quota",
    "VerifyResult",
    "budget_period",
    "canonical_bytes",
    "chain_hash",
    "query_budgets",
    "verify_chain",
]
