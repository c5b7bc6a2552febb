"""The audit log (DESIGN §10): entry types and the hash chain that makes tampering show."""

from gateway.audit._chain import CheckpointCheck, canonical_bytes, chain_hash, verify_chain
from gateway.audit._types import GENESIS_HASH, AuditDraft, AuditEntry, AuditFilter, Outcome, VerifyResult

__all__ = [
    "GENESIS_HASH",
    "AuditDraft",
    "AuditEntry",
    "AuditFilter",
    "CheckpointCheck",
    "Outcome",
    "VerifyResult",
    "canonical_bytes",
    "chain_hash",
    "verify_chain",
]
