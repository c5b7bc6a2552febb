"""The Audit service: auditors list, verify and export the decision log (DESIGN §10).
Reading the log is itself a decision, and is logged before anything is streamed."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from typing import Any, TypeGuard

import grpc

from gateway._pb import audit_pb2, audit_pb2_grpc
from gateway.audit import verify_chain
from gateway.audit._types import AuditEntry, AuditFilter, AuditScope
from gateway.errors import InvalidRequest, PolicyEngineError
from gateway.policy._engine import AUDIT_RULE
from gateway.server._context import current
from gateway.server._recorder import AuditSubject, outcome_of, refusal
from gateway.server._state import Shared, policy_input

_OUTCOMES = ("", "allow", "deny", "error")


class AuditService(audit_pb2_grpc.AuditServicer):
    def __init__(self, shared: Shared) -> None:
        self._s = shared

    def _authorise(self, action: str, request: dict[str, Any]) -> AuditScope | None:
        """Decide and record; the scope of entries the caller may read (None: all of them)."""
        ctx = current()
        input_doc = policy_input(ctx, action, request)
        decision = self._s.decide(AUDIT_RULE, input_doc)
        subject = AuditSubject(action, AUDIT_RULE, decision.revision, input_doc=input_doc)
        scope: AuditScope | None = None
        if decision.allow:
            try:
                scope = audit_scope(decision.obligations)
            except PolicyEngineError as exc:  # fail closed, and say so in the log
                reasons = (exc.message,)
                self._s.recorder.record(
                    ctx, subject, outcome="error", reasons=reasons, result=decision.result
                )
                raise
        outcome = outcome_of(decision)
        self._s.recorder.record(
            ctx, subject, outcome=outcome, reasons=decision.reasons, result=decision.result
        )
        if not decision.allow:
            raise refusal(decision)
        return scope

    def ListDecisions(
        self, request: audit_pb2.ListDecisionsRequest, context: grpc.ServicerContext
    ) -> Iterator[audit_pb2.Decision]:
        filt = _filter(request)
        scope = self._authorise("audit.list", {k: v for k, v in vars(filt).items() if v})
        for entry in self._s.store.audit_entries(dataclasses.replace(filt, scope=scope)):
            yield to_decision(entry)

    def VerifyLog(
        self, request: audit_pb2.VerifyLogRequest, context: grpc.ServicerContext
    ) -> audit_pb2.VerifyReport:
        self._authorise("audit.verify", {})  # not scoped: the chain is checked whole, no entry shown
        result = verify_chain(self._s.store.audit_entries())
        return audit_pb2.VerifyReport(
            ok=result.ok,
            entries_checked=result.entries_checked,
            first_bad_seq=result.first_bad_seq,
            problem=result.problem,
            head_hash=result.head_hash,
        )

    def ExportLog(
        self, request: audit_pb2.ExportLogRequest, context: grpc.ServicerContext
    ) -> Iterator[audit_pb2.ExportChunk]:
        scope = self._authorise("audit.export", {})
        for entry in self._s.store.audit_entries(AuditFilter(scope=scope)):
            yield audit_pb2.ExportChunk(json_line=entry_json(entry))


def audit_scope(obligations: Mapping[str, Any]) -> AuditScope | None:
    """The audit policy's scope obligation: None for the whole log, else the agencies and
    agreements whose entries may be read. Anything missing or odd fails closed."""
    scope = obligations.get("scope")
    if isinstance(scope, Mapping) and scope.get("all") is True:
        return None
    if isinstance(scope, Mapping) and scope.get("all") is False:
        agencies, agreements = scope.get("agencies"), scope.get("agreements")
        if _names(agencies) and _names(agreements):
            return AuditScope(agencies=frozenset(agencies), agreements=frozenset(agreements))
    raise PolicyEngineError("audit policy decision carries no usable scope")


def _names(value: Any) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _filter(request: audit_pb2.ListDecisionsRequest) -> AuditFilter:
    if request.outcome not in _OUTCOMES:
        raise InvalidRequest("outcome", "must be allow, deny or error")
    for name in ("since", "until", "principal", "agency", "agreement_id", "decision_id"):
        if len(getattr(request, name)) > 256:
            raise InvalidRequest(name, "is too long")
    return AuditFilter(
        since=request.since,
        until=request.until,
        principal=request.principal,
        agency=request.agency,
        agreement_id=request.agreement_id,
        outcome=request.outcome,
        decision_id=request.decision_id,
        limit=request.limit,
    )


def to_decision(entry: AuditEntry) -> audit_pb2.Decision:
    return audit_pb2.Decision(
        seq=entry.seq,
        decision_id=entry.decision_id,
        timestamp=entry.timestamp,
        path=entry.path,
        principal=entry.principal,
        agency=entry.agency,
        action=entry.action,
        agreement_id=entry.agreement_id,
        purpose=entry.purpose,
        outcome=entry.outcome,
        reasons=list(entry.reasons),
        policy_revision=entry.policy_revision,
        query_fingerprint=entry.query_fingerprint,
        cells_released=entry.cells_released,
        cells_withheld=entry.cells_withheld,
        latency_ms=entry.latency_ms,
        input_json=json.dumps(entry.input, sort_keys=True),
        result_json=json.dumps(entry.result, sort_keys=True),
        prev_hash=entry.prev_hash,
        hash=entry.hash,
    )


def entry_json(entry: AuditEntry) -> str:
    """One decision as a JSON line, in OPA decision-log field names where they exist."""
    doc = {
        "seq": entry.seq,
        "decision_id": entry.decision_id,
        "timestamp": entry.timestamp,
        "path": entry.path,
        "input": entry.input,
        "result": entry.result,
        "bundles": {"datashare": {"revision": entry.policy_revision}},
        "principal": entry.principal,
        "agency": entry.agency,
        "action": entry.action,
        "agreement_id": entry.agreement_id,
        "purpose": entry.purpose,
        "outcome": entry.outcome,
        "reasons": list(entry.reasons),
        "query_fingerprint": entry.query_fingerprint,
        "cells_released": entry.cells_released,
        "cells_withheld": entry.cells_withheld,
        "latency_ms": entry.latency_ms,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))
