"""The Query service: what an analyst may ask, and aggregate answers that passed disclosure
control (DESIGN §3, §9). The audit entry is written before the answer leaves."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import grpc

from gateway._pb import query_pb2, query_pb2_grpc
from gateway.disclosure import ReleaseInfo, apply_disclosure, build_grid, to_proto
from gateway.errors import GatewayError, InvalidRequest, PermissionDenied, PolicyEngineError
from gateway.policy._engine import LISTING_RULE, QUERY_RULE
from gateway.query import validate_request
from gateway.query._validate import policy_request, query_fingerprint
from gateway.server._context import current
from gateway.server._recorder import AuditSubject, outcome_of
from gateway.server._state import Shared, policy_input

K_FLOOR = 10  # the consortium's floor (DESIGN §9): no obligation can go below it


class QueryService(query_pb2_grpc.QueryServicer):
    def __init__(self, shared: Shared) -> None:
        self._s = shared

    def ListDatasets(
        self, request: query_pb2.ListDatasetsRequest, context: grpc.ServicerContext
    ) -> query_pb2.ListDatasetsResponse:
        ctx, policy = current(), self._s.policy
        input_doc = policy_input(ctx, "list_datasets", {})
        subject = AuditSubject("list_datasets", LISTING_RULE, policy.revision, input_doc=input_doc)
        try:
            entries = policy.engine.query(LISTING_RULE, input_doc)
        except PolicyEngineError as exc:
            self._s.recorder.record(ctx, subject, outcome="error", reasons=(exc.message,))
            raise
        entries = entries if isinstance(entries, list) else []
        response = query_pb2.ListDatasetsResponse()
        for entry in entries:
            dataset = (
                policy.catalogue.dataset(str(entry.get("dataset", "")))
                if isinstance(entry, Mapping)
                else None
            )
            if dataset is None:
                continue
            response.datasets.append(
                query_pb2.QueryableDataset(
                    agreement_id=str(entry.get("agreement_id", "")),
                    agreement_title=str(entry.get("agreement_title", "")),
                    purposes=[str(p) for p in entry.get("purposes", [])],
                    contract=dataset.to_proto(),
                    allowed_dimensions=[str(d) for d in entry.get("dimensions", [])],
                    allowed_measures=[str(m) for m in entry.get("measures", [])],
                    k=int(entry.get("k", K_FLOOR)),
                    round_to=int(entry.get("round_to", 5)),
                    max_cells=int(entry.get("max_cells", 0)),
                    max_group_by=int(entry.get("max_group_by", 0)),
                )
            )
        listed = (f"{len(response.datasets)} dataset(s) listed",)
        self._s.recorder.record(ctx, subject, outcome="allow", reasons=listed)
        return response

    def Aggregate(
        self, request: query_pb2.AggregateRequest, context: grpc.ServicerContext
    ) -> query_pb2.AggregateResult:
        ctx, policy = current(), self._s.policy
        base = AuditSubject(
            "query", QUERY_RULE, policy.revision, _loggable(request.agreement_id), _loggable(request.purpose)
        )
        try:
            spec = validate_request(request, policy.catalogue)
        except InvalidRequest as exc:
            self._s.recorder.record(ctx, base, outcome="deny", reasons=(exc.message,))
            raise
        req = policy_request(spec, request.agreement_id, request.purpose)
        fingerprint = query_fingerprint(spec)
        input_doc = policy_input(ctx, "query", req)
        base = dataclasses.replace(base, fingerprint=fingerprint, input_doc=input_doc)
        decision = self._s.decide(QUERY_RULE, input_doc, policy)
        if not decision.allow:
            self._s.recorder.record(
                ctx, base, outcome=outcome_of(decision), reasons=decision.reasons, result=decision.result
            )
            raise PermissionDenied(decision.reasons)
        try:
            k, round_to, max_cells = _obligations(decision.obligations)
        except PolicyEngineError as exc:  # fail closed, and say so in the log
            self._s.recorder.record(
                ctx, base, outcome="error", reasons=(exc.message,), result=decision.result
            )
            raise
        try:
            grid = build_grid(spec, policy.catalogue, max_cells=max_cells)
        except InvalidRequest as exc:
            self._s.recorder.record(ctx, base, outcome="deny", reasons=(exc.message,), result=decision.result)
            raise
        try:
            raw = self._s.store.aggregate(spec)
            released = apply_disclosure(spec, raw, grid, k=k, round_to=round_to)
        except GatewayError as exc:  # allowed, then failed: the log says so, and nothing leaves
            self._s.recorder.record(
                ctx, base, outcome="error", reasons=(exc.message,), result=decision.result
            )
            raise
        self._s.recorder.record(
            ctx,
            base,
            outcome="allow",
            reasons=decision.reasons,
            result=decision.result,
            cells_released=released.cells_released,
            cells_withheld=released.cells_withheld,
        )
        self._s.metrics.cells_withheld.inc(released.cells_withheld)
        info = ReleaseInfo(
            k=k,
            round_to=round_to,
            decision_id=ctx.decision_id,
            policy_revision=policy.revision,
            agreement_id=request.agreement_id,
        )
        return to_proto(spec, released, info)


def _loggable(value: str) -> str:
    """An identifier as the audit log may hold it before validation: short and printable, or nothing."""
    return value if len(value) <= 64 and value.isascii() and value.isprintable() else ""


def _obligations(obligations: Mapping[str, Any]) -> tuple[int, int, int]:
    """k, rounding base and cell cap from the decision; anything missing or odd fails closed."""
    try:
        k, round_to, max_cells = (int(obligations[name]) for name in ("k", "round_to", "max_cells"))
    except (KeyError, TypeError, ValueError) as exc:
        raise PolicyEngineError("policy decision carries no usable disclosure obligations") from exc
    if k < K_FLOOR or round_to < 1 or max_cells < 1:
        raise PolicyEngineError("policy decision carries disclosure obligations below the consortium floor")
    # Noise and a query budget are agreement terms this gateway cannot enforce yet: an answer
    # released without them would break the agreement, so refuse (fail closed).
    for term in ("noise", "budget"):
        if obligations.get(term) is not None:
            raise PolicyEngineError(f"the agreement sets {term}, which this gateway does not enforce yet")
    return k, round_to, max_cells
