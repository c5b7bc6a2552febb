"""The Ingest service: agents fetch their contract and push sealed batches (DESIGN §3)."""

from __future__ import annotations

import dataclasses

import grpc

from gateway._pb import common_pb2, ingest_pb2, ingest_pb2_grpc
from gateway.errors import BatchRejected, Conflict, GatewayError, InvalidRequest, PermissionDenied
from gateway.ingest import parse_header
from gateway.policy._engine import INGEST_RULE
from gateway.server._context import current
from gateway.server._metrics import UNKNOWN
from gateway.server._recorder import AuditSubject, outcome_of, refusal
from gateway.server._state import Shared, policy_input

# BatchRejected names the field at fault; its first part says which check refused the batch
_REASON_CLASSES = {"header": "header", "signature": "signature", "ciphertext": "seal", "records": "contract"}


def reason_class(exc: BatchRejected) -> str:
    """A fixed word for a metric label: header, signature, seal, contract (or other)."""
    if exc.field == "header.signing_key_id":
        return "signature"
    return _REASON_CLASSES.get(exc.field.split(".", 1)[0], "other")


class IngestService(ingest_pb2_grpc.IngestServicer):
    def __init__(self, shared: Shared) -> None:
        self._s = shared

    def _count_refused(
        self, dataset: str, agency: str, reason: str, records: int, outcome: str = "rejected"
    ) -> None:
        metrics = self._s.metrics
        metrics.batches.labels(dataset=dataset, agency=agency, outcome=outcome).inc()
        metrics.batches_rejected.labels(dataset=dataset, reason=reason).inc()
        metrics.records_rejected.labels(dataset=dataset, reason=reason).inc(records)

    def GetContract(
        self, request: ingest_pb2.GetContractRequest, context: grpc.ServicerContext
    ) -> common_pb2.DatasetContract:
        ctx, policy = current(), self._s.policy
        if not request.dataset or len(request.dataset) > 64:
            raise InvalidRequest("dataset", "must name a dataset")
        req = {"dataset": request.dataset, "contract_version": 0}
        input_doc = policy_input(ctx, "get_contract", req)
        decision = self._s.decide(INGEST_RULE, input_doc, policy)
        subject = AuditSubject("get_contract", INGEST_RULE, decision.revision, input_doc=input_doc)
        outcome = outcome_of(decision)
        self._s.recorder.record(
            ctx, subject, outcome=outcome, reasons=decision.reasons, result=decision.result
        )
        dataset = policy.catalogue.dataset(request.dataset)
        if not decision.allow or dataset is None:
            raise refusal(decision)
        return dataset.to_proto()

    def PushBatch(self, request: ingest_pb2.SealedBatch, context: grpc.ServicerContext) -> ingest_pb2.PushAck:
        ctx, policy = current(), self._s.policy
        audit = AuditSubject("ingest", INGEST_RULE, policy.revision)
        try:
            header = parse_header(request.header)
        except BatchRejected as exc:  # hostile or broken input leaves a trace too
            self._s.recorder.record(ctx, audit, outcome="deny", reasons=(exc.message,))
            self._count_refused(UNKNOWN, ctx.principal.agency, reason_class(exc), 0)
            raise
        req = {"dataset": header.dataset, "contract_version": header.contract_version}
        input_doc = policy_input(ctx, "ingest", req)
        audit = dataclasses.replace(audit, input_doc={**input_doc, "batch_id": header.batch_id})
        dataset = policy.catalogue.dataset(header.dataset)
        label = dataset.name if dataset is not None else UNKNOWN  # never a name the caller made up
        agency = ctx.principal.agency
        if header.agency != agency:
            reason = "header.agency: does not match the agency of the calling certificate"
            self._s.recorder.record(ctx, audit, outcome="deny", reasons=(reason,))
            self._count_refused(label, agency, "agency_mismatch", header.record_count, "denied")
            raise PermissionDenied((reason,))
        decision = self._s.decide(INGEST_RULE, input_doc, policy)
        if not decision.allow or dataset is None:
            self._s.recorder.record(
                ctx, audit, outcome=outcome_of(decision), reasons=decision.reasons, result=decision.result
            )
            self._count_refused(label, agency, "policy", header.record_count, "denied")
            raise refusal(decision)
        try:
            opened = self._s.opener.open(request, header, dataset)
        except BatchRejected as exc:
            self._s.recorder.record(
                ctx, audit, outcome="deny", reasons=(exc.message,), result=decision.result
            )
            self._count_refused(label, agency, reason_class(exc), header.record_count)
            raise
        # The decision is in the log before anything is written: no audit entry, no storage.
        self._s.recorder.record(
            ctx, audit, outcome="allow", reasons=("batch verified and valid",), result=decision.result
        )
        try:
            outcome = self._s.store.store_batch(opened.meta, opened.records)
        except GatewayError as exc:
            failed = dataclasses.replace(audit, action="ingest.store")
            self._s.recorder.record(
                ctx, failed, outcome="deny" if isinstance(exc, Conflict) else "error", reasons=(exc.message,)
            )
            conflict = isinstance(exc, Conflict)
            self._count_refused(
                label,
                agency,
                "conflict" if conflict else "store_error",
                header.record_count,
                "rejected" if conflict else "failed",
            )
            raise
        if outcome.stored:
            self._s.metrics.records_ingested.labels(dataset=dataset.name).inc(outcome.records)
        self._s.metrics.batches.labels(
            dataset=dataset.name, agency=agency, outcome="stored" if outcome.stored else "duplicate"
        ).inc()
        return ingest_pb2.PushAck(
            batch_id=header.batch_id,
            status=ingest_pb2.PushAck.STATUS_STORED
            if outcome.stored
            else ingest_pb2.PushAck.STATUS_DUPLICATE,
            records_stored=outcome.records if outcome.stored else 0,
            decision_id=ctx.decision_id,
        )
