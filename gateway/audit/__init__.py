"""The audit log (DESIGN §10): entry types and the hash chain that makes tampering show."""

from gateway.audit._budget import BudgetPeriod, QueryBudget, Quota, budget_period, query_budgets
from gateway.audit._chain import CheckpointCheck, canonical_bytes, chain_hash, verify_chain
from gateway.audit._report import (
    AuditReport,
    BudgetUse,
    Denial,
    Latency,
    PrivacyUse,
    Suppression,
    Tally,
    TimeBucket,
    build_report,
    report_dict,
)
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
    "AuditReport",
    "AuditScope",
    "BudgetPeriod",
    "BudgetUse",
    "CheckpointCheck",
    "Denial",
    "Latency",
    "Outcome",
    "PrivacyUse",
    "QueryBudget",
    "Quota",
    "Suppression",
    "Tally",
    "TimeBucket",
    "VerifyResult",
    "budget_period",
    "build_report",
    "canonical_bytes",
    "chain_hash",
    "query_budgets",
    "report_dict",
    "verify_chain",
]
