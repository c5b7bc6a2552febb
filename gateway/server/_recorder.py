"""Writing every decision to the audit log before anything is released (DESIGN §3, §10).

Before an entry is built, the policy's log mask (``datashare/log/mask``, gateway.audit._mask)
is applied to its input and result. If the mask cannot be evaluated or applied, the failure is
counted and logged and the entry is written without any input or result, both recorded as
erased: never unmasked. An allow then becomes an error entry and AuditWriteError (nothing is
released); a deny stays the deny it was (the caller gets the policy's refusal, not an outage).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.audit._budget import Quota
from gateway.audit._mask import Masked, MaskError, mask_event
from gateway.audit._types import AuditDraft, AuditEntry, Outcome
from gateway.errors import AuditWriteError, BudgetSpent, GatewayError, PermissionDenied, PolicyEngineError
from gateway.policy._engine import LOG_MASK_RULE, PolicyDecision, PolicyEngine
from gateway.server._context import RequestContext
from gateway.server._metrics import Metrics
from gateway.store._base import Store
from gateway.store._ledger import LedgerMoved, LedgerWrite

log = structlog.get_logger("gateway.audit")
MASK_FAILED_REASON = "the log mask policy failed, so the input is not recorded"
_ERASED_WHOLE = ("/input", "/result")


@dataclass(frozen=True)
class AuditSubject:
    """What a decision is about: the parts of an audit entry fixed before the outcome is known."""

    action: str
    path: str = ""
    revision: str = ""
    agreement_id: str = ""
    purpose: str = ""
    fingerprint: str = ""
    input_doc: Mapping[str, Any] = field(default_factory=dict)


def outcome_of(decision: PolicyDecision) -> Outcome:
    return "allow" if decision.allow else ("error" if decision.error else "deny")


def refusal(decision: PolicyDecision) -> GatewayError:
    """The error to raise for a decision that does not allow. The policy's own deny is
    PERMISSION_DENIED with its reasons; a deny the engine failed into (fail closed: down, slow,
    garbled) is UNAVAILABLE with the same reasons, because asking again later may succeed: an
    agent takes PERMISSION_DENIED as a refusal for good and would stop pushing."""
    if decision.error is not None:
        return PolicyEngineError("; ".join(decision.reasons))
    return PermissionDenied(decision.reasons)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Recorder:
    def __init__(
        self, store: Store, metrics: Metrics, mask_engine: Callable[[], PolicyEngine | None] = lambda: None
    ) -> None:
        """``mask_engine``: the engine serving now, whose bundle's log mask applies (None: the
        entries carry their input unmasked, for stores written outside a gateway)."""
        self._store = store
        self._metrics = metrics
        self._mask_engine = mask_engine

    def _masked(self, subject: AuditSubject, result: Mapping[str, Any]) -> Masked:
        engine = self._mask_engine()
        input_doc = dict(subject.input_doc)
        if engine is None:
            return Masked(input_doc, dict(result), (), ())
        event = {"input": input_doc, "result": dict(result), "path": subject.path, "action": subject.action}
        return mask_event(input_doc, result, engine.query(LOG_MASK_RULE, event))

    def record(
        self,
        ctx: RequestContext,
        subject: AuditSubject,
        *,
        outcome: Outcome,
        reasons: Sequence[str] = (),
        result: Mapping[str, Any] | None = None,
        cells_released: int = 0,
        cells_withheld: int = 0,
        quota: Quota | tuple[Quota, ...] | None = None,
        ledger: LedgerWrite | None = None,
    ) -> AuditEntry:
        """Append the entry or raise AuditWriteError: the caller then releases nothing. With a
        quota, BudgetSpent if the query budget was used up meanwhile (nothing written). With
        ``ledger``, the release's ledger rows go in the same transaction; LedgerMoved (nothing
        written) if a racing release grew the ledger after this one was checked."""
        mask_failed = False
        try:
            masked = self._masked(subject, result or {})
        except (PolicyEngineError, MaskError) as exc:
            self._metrics.audit_mask_failures.inc()
            log.error("audit_mask_failed", action=subject.action, error=type(exc).__name__)  # noqa: TRY400 - the message may quote the input
            masked = Masked({}, {}, _ERASED_WHOLE, ())
            if outcome == "allow":  # recorded as the error it becomes; nothing is released
                mask_failed = True
                outcome, reasons, cells_released, cells_withheld = "error", (), 0, 0
                quota, ledger = None, None
            reasons = (*reasons, MASK_FAILED_REASON)
        draft = AuditDraft(
            decision_id=ctx.decision_id,
            timestamp=utc_now(),
            path=subject.path,
            principal=ctx.principal.spiffe_id,
            agency=ctx.principal.agency,
            action=subject.action,
            outcome=outcome,
            reasons=tuple(reasons),
            agreement_id=subject.agreement_id,
            purpose=subject.purpose,
            policy_revision=subject.revision,
            query_fingerprint=subject.fingerprint,
            cells_released=cells_released,
            cells_withheld=cells_withheld,
            latency_ms=round(ctx.elapsed_ms(), 3),
            input=masked.input,
            result=masked.result,
            erased=masked.erased,
            masked=masked.masked,
        )
        action = subject.action
        try:
            with self._metrics.audit_latency.time():
                entry = (
                    self._store.append_audit(draft, quota=quota)
                    if ledger is None
                    else self._store.append_audit(draft, quota=quota, ledger=ledger)
                )
        except (BudgetSpent, LedgerMoved):
            raise  # not a decision yet: the caller decides again and records that
        except GatewayError as exc:
            self._metrics.decisions.labels(action=action, outcome=outcome).inc()
            self._metrics.audit_failures.inc()
            log.error("audit_write_failed", action=action, error=type(exc).__name__)  # noqa: TRY400 - a traceback may hold row data
            raise AuditWriteError(
                "audit log: the decision could not be recorded, so nothing is released"
            ) from exc
        self._metrics.decisions.labels(action=action, outcome=outcome).inc()
        log.info("decision", action=action, outcome=outcome, agreement=subject.agreement_id, seq=entry.seq)
        if mask_failed:
            raise AuditWriteError("audit log: the log mask policy failed, so nothing is released")
        return entry

    def record_unauthenticated(self, method: str, reason: str, decision_id: str) -> None:
        """Audit a refused caller who has no principal; failures here are logged, not raised,
        because the caller is refused either way."""
        draft = AuditDraft(
            decision_id=decision_id,
            timestamp=utc_now(),
            path="",
            principal="unauthenticated",
            agency="",
            action=method,
            outcome="deny",
            reasons=(reason,),
        )
        self._metrics.decisions.labels(action="authenticate", outcome="deny").inc()
        try:
            self._store.append_audit(draft)
        except GatewayError:
            self._metrics.audit_failures.inc()
            log.error("audit_write_failed", action="authenticate")  # noqa: TRY400 - the store already logged the cause
