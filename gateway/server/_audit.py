"""The Audit service: auditors list, verify and export the decision log, and fetch the signed
head and checkpoints to keep off-site (DESIGN §10). Reading the log is itself a decision, and is
logged before anything is streamed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator, Mapping
from typing import Any, TypeGuard

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway._pb import audit_pb2, audit_pb2_grpc
from gateway.audit import Checkpoint, checkpoint_from_json, key_id, public_pem, sign_checkpoint, verify_log
from gateway.audit._budget import stamp
from gateway.audit._export import entry_json
from gateway.audit._types import AuditEntry, AuditFilter, AuditScope
from gateway.errors import InvalidRequest, PolicyEngineError, Unavailable
from gateway.policy._engine import AUDIT_RULE
from gateway.query import check_text
from gateway.server._context import current
from gateway.server._recorder import AuditSubject, outcome_of, refusal
from gateway.server._state import Shared, policy_input

_OUTCOMES = ("", "allow", "deny", "error")
_MAX_FILTER = 256


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
        try:
            filt = _filter(request)
        except InvalidRequest as exc:  # a refusal is a decision too; the value is not logged
            refused = AuditSubject("audit.list", AUDIT_RULE, self._s.policy.revision)
            self._s.recorder.record(current(), refused, outcome="deny", reasons=(exc.message,))
            raise
        scope = self._authorise("audit.list", {k: v for k, v in vars(filt).items() if v})
        for entry in self._s.store.audit_entries(dataclasses.replace(filt, scope=scope)):
            yield to_decision(entry)

    def VerifyLog(
        self, request: audit_pb2.VerifyLogRequest, context: grpc.ServicerContext
    ) -> audit_pb2.VerifyReport:
        supplied = [_checkpoint(c, f"checkpoints[{i}]") for i, c in enumerate(request.checkpoints)]
        # not scoped: the chain is checked whole, no entry shown
        self._authorise("audit.verify", {"from_anchor": request.from_anchor, "checkpoints": len(supplied)})
        public = self._key().public_key()
        stored = self._s.store.audit_checkpoints()
        result = verify_log(
            self._s.store.audit_entries(),
            list(dict.fromkeys([*stored, *supplied])),
            {key_id(public): public},
            from_anchor=request.from_anchor,
        )
        return audit_pb2.VerifyReport(
            ok=result.ok,
            entries_checked=result.entries_checked,
            first_bad_seq=result.first_bad_seq,
            problem=result.problem,
            head_hash=result.head_hash,
            first_bad_decision_id=result.first_bad_decision_id,
            edited_columns=list(result.edited_columns),
            checkpoints_checked=result.checkpoints_checked,
            anchor_seq=result.anchor_seq,
            head_seq=result.head_seq,
        )

    def ExportLog(
        self, request: audit_pb2.ExportLogRequest, context: grpc.ServicerContext
    ) -> Iterator[audit_pb2.ExportChunk]:
        filt = _filter(request.filter)
        scope = self._authorise("audit.export", {k: v for k, v in vars(filt).items() if v})
        for entry in self._s.store.audit_entries(dataclasses.replace(filt, scope=scope)):
            yield audit_pb2.ExportChunk(json_line=entry_json(entry))

    def GetHead(
        self, request: audit_pb2.GetHeadRequest, context: grpc.ServicerContext
    ) -> audit_pb2.Checkpoint:
        self._authorise("audit.head", {})
        key = self._key()
        seq, head_hash = self._s.store.audit_head()
        return to_checkpoint(sign_checkpoint(key, seq, head_hash, stamp(dt.datetime.now(dt.UTC)), "head"))

    def ListCheckpoints(
        self, request: audit_pb2.ListCheckpointsRequest, context: grpc.ServicerContext
    ) -> audit_pb2.CheckpointList:
        self._authorise("audit.checkpoints", {})
        public = self._key().public_key()
        return audit_pb2.CheckpointList(
            checkpoints=[to_checkpoint(c) for c in self._s.store.audit_checkpoints()],
            public_key_pem=public_pem(public),
            key_id=key_id(public),
        )

    def _key(self) -> Ed25519PrivateKey:
        if self._s.audit_key is None:
            raise Unavailable("audit log: this gateway has no audit signing key loaded")
        return self._s.audit_key


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
        if value := getattr(request, name):  # empty: no filter on it
            check_text(name, value, _MAX_FILTER)
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


def to_checkpoint(cp: Checkpoint) -> audit_pb2.Checkpoint:
    return audit_pb2.Checkpoint(**cp.as_json())


def _checkpoint(message: audit_pb2.Checkpoint, where: str) -> Checkpoint:
    doc = {f: getattr(message, f) for f in ("seq", "head_hash", "timestamp", "key_id", "kind", "signature")}
    try:
        return checkpoint_from_json(doc, where)
    except ValueError as exc:
        field, _, problem = str(exc).partition(": ")
        raise InvalidRequest(field, problem) from None


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
        schema_version=entry.schema_version,
        erased=list(entry.erased),
        masked=list(entry.masked),
    )
