"""The audit log (DESIGN §10): entry types, the hash chain that makes tampering show, signed
checkpoints, the log mask, verification and the export forms."""

from gateway.audit._budget import BudgetPeriod, QueryBudget, Quota, budget_period, query_budgets
from gateway.audit._chain import CheckpointCheck, canonical_bytes, chain_hash, verify_chain
from gateway.audit._checkpoint import (
    Checkpoint,
    CheckpointPolicy,
    checkpoint_from_json,
    key_id,
    load_public_pem,
    public_pem,
    sign_checkpoint,
)
from gateway.audit._export import csv_text, entry_from_json, entry_json
from gateway.audit._mask import Masked, MaskError, mask_event
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
    SCHEMA_VERSION,
    AuditDraft,
    AuditEntry,
    AuditFilter,
    AuditScope,
    Outcome,
    VerifyResult,
)
from gateway.audit._verify import verify_log

__all__ = [
    "GENESIS_HASH",
    "SCHEMA_VERSION",
    "AuditDraft",
    "AuditEntry",
    "AuditFilter",
    "AuditReport",
    "AuditScope",
    "BudgetPeriod",
    "BudgetUse",
    "Checkpoint",
    "CheckpointCheck",
    "CheckpointPolicy",
    "Denial",
    "Latency",
    "MaskError",
    "Masked",
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
    "checkpoint_from_json",
    "csv_text",
    "entry_from_json",
    "entry_json",
    "key_id",
    "load_public_pem",
    "mask_event",
    "public_pem",
    "query_budgets",
    "report_dict",
    "sign_checkpoint",
    "verify_chain",
    "verify_log",
]
