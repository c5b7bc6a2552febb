"""The Query service: what an analyst may ask, and aggregate answers that passed disclosure
control (DESIGN §3, §9). The audit entry is written before the answer leaves."""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import grpc

from gateway._pb import query_pb2, query_pb2_grpc
from gateway.audit import QueryBudget, Quota, budget_period
from gateway.audit._budget import parse_time
from gateway.disclosure import Dominance, Released, ReleaseInfo, apply_disclosure, build_grid, to_proto
from gateway.errors import BudgetSpent, GatewayError, InvalidRequest, PermissionDenied, PolicyEngineError
from gateway.policy._engine import LISTING_RULE, QUERY_RULE, PolicyDecision
from gateway.query import RawResult, validate_request
from gateway.query._validate import policy_request, query_fingerprint
from gateway.server._context import RequestContext, current
from gateway.server._privacy import Privacy, privacy_terms
from gateway.server._recorder import AuditSubject, outcome_of, refusal
from gateway.server._release_ledger import LedgerTooBroad, ledger_release
from gateway.server._release_locks import ReleaseLocks
from gateway.server._state import PolicyState, Shared, policy_input
from gateway.store._ledger import LedgerMoved, LedgerWrite

K_FLOOR = 10  # the consortium's floor (DESIGN §9): no obligation can go below it
# A release checked against a ledger that another release under the agreement grew meanwhile is
# checked again, this many times in all, before the analyst is told to ask again (UNAVAILABLE).
LEDGER_ATTEMPTS = 8


class QueryService(query_pb2_grpc.QueryServicer):
    def __init__(self, shared: Shared) -> None:
        self._s = shared
        self._releases = ReleaseLocks()

    def ListDatasets(
        self, request: query_pb2.ListDatasetsRequest, context: grpc.ServicerContext
    ) -> query_pb2.ListDatasetsResponse:
        ctx, policy = current(), self._s.policy
        input_doc = policy_input(ctx, "list_datasets", {})
        subject = AuditSubject("list_datasets", LISTING_RULE, policy.revision, input_doc=input_doc)
        try:
            entries = self._s.query(LISTING_RULE, input_doc, policy)
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
                    filters=[str(f) for f in entry.get("filters", [])],
                    forbidden_combinations=_combinations(entry.get("forbidden_combinations", [])),
                    query_budget=_budget_proto(policy.budgets.get(str(entry.get("agreement_id", "")))),
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
        quota = self._budget_use(ctx, base, policy, request.agreement_id, input_doc)
        decision = self._s.decide(QUERY_RULE, input_doc, policy)
        if not decision.allow:
            self._denied(ctx, base, decision, quota)
        try:
            k, round_to, max_cells = _obligations(decision.obligations, budgeted=quota is not None)
            dominance, show_zeros = cell_terms(decision.obligations)
            privacy = privacy_terms(
                decision.obligations, request.agreement_id, now=str(input_doc["now"]), key=self._s.noise_key
            )
        except PolicyEngineError as exc:  # fail closed, and say so in the log
            self._s.recorder.record(
                ctx, base, outcome="error", reasons=(exc.message,), result=decision.result
            )
            raise
        self._privacy_left(ctx, base, privacy, decision.result)
        try:
            grid = build_grid(spec, policy.catalogue, max_cells=max_cells)
        except InvalidRequest as exc:
            self._s.recorder.record(ctx, base, outcome="deny", reasons=(exc.message,), result=decision.result)
            raise

        def disclose(raw: RawResult) -> Released:
            noise = None if privacy is None else privacy.noise(spec.dataset, raw.data_version)
            return apply_disclosure(
                spec,
                raw,
                grid,
                k=k,
                round_to=round_to,
                dominance=dominance,
                show_zeros=show_zeros,
                noise=noise,
            )

        try:
            raw = self._s.store.aggregate(
                spec, top_n=dominance.n, digest=privacy is not None, near_percent=dominance.percent
            )
            suppressed = disclose(raw)
        except Exception as exc:  # allowed, then failed: the log says so, and nothing leaves
            self._failed(ctx, base, exc, decision.result)
            raise

        def check() -> tuple[Released, LedgerWrite]:
            # -- release ledger (DESIGN §9 items 3, 6; gateway/server/_release_ledger.py) --
            return ledger_release(
                self._s.store,
                spec,
                raw,
                grid,
                suppressed,
                catalogue=policy.catalogue,
                disclose=disclose,
                agreement_id=request.agreement_id,
                decision_id=ctx.decision_id,
                k=k,
                dominance=dominance,
            )

        quotas = tuple(q for q in (quota, None if privacy is None else privacy.quota) if q is not None)
        with self._releases.hold(request.agreement_id, spec.dataset):  # see _release_locks
            released = self._record_release(
                ctx, base, decision=decision, policy=policy, quotas=quotas, privacy=privacy, check=check
            )
        self._count_cells(released)
        info = ReleaseInfo(
            k=k,
            round_to=round_to,
            decision_id=ctx.decision_id,
            policy_revision=policy.revision,
            agreement_id=request.agreement_id,
        )
        return to_proto(spec, released, info)

    def _record_release(
        self,
        ctx: RequestContext,
        base: AuditSubject,
        *,
        decision: PolicyDecision,
        policy: PolicyState,
        quotas: tuple[Quota, ...],
        privacy: Privacy | None,
        check: Callable[[], tuple[Released, LedgerWrite]],
    ) -> Released:
        """Check the release against the ledger and write its audit entry (with its ledger rows,
        both budgets re-checked under the audit lock); what the entry records is what leaves."""
        for attempt in range(1, LEDGER_ATTEMPTS + 1):
            try:
                released, ledger = check()
            except Exception as exc:
                self._failed(ctx, base, exc, decision.result)
                raise
            try:
                self._s.recorder.record(
                    ctx,
                    base,
                    outcome="allow",
                    reasons=decision.reasons,
                    result=decision.result,
                    cells_released=released.cells_released,
                    cells_withheld=released.cells_withheld,
                    quota=quotas,
                    ledger=ledger,
                )
            except BudgetSpent as spent:  # a racing query took the last unit: nothing leaves
                if privacy is not None and spent.quota is privacy.quota:  # the last of the privacy budget
                    self._deny_privacy(ctx, base, privacy, decision.result)
                self._deny_spent(ctx, base, policy, spent)
            except LedgerMoved as moved:  # a racing release changed what this one was checked against
                if attempt < LEDGER_ATTEMPTS:
                    # checked again against the ledger as it is now: the analyst need not ask again
                    time.sleep(random.uniform(0, 0.005 * attempt))  # noqa: S311 - spreads retries, no secret
                    continue
                self._s.recorder.record(
                    ctx, base, outcome="error", reasons=(moved.message,), result=decision.result
                )
                raise
            return released
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _failed(self, ctx: RequestContext, base: AuditSubject, exc: Exception, result: Any) -> None:
        """Record an allowed query that failed before anything left. A query the ledger cannot
        check in time is refused in plain words (a deny, not an error); a bug's own text could
        hold anything, so such an entry gets a fixed reason."""
        self._s.recorder.record(
            ctx,
            base,
            outcome="deny" if isinstance(exc, LedgerTooBroad) else "error",
            reasons=(exc.message if isinstance(exc, GatewayError) else "internal error while answering",),
            result=result,
        )

    def _denied(
        self, ctx: RequestContext, base: AuditSubject, decision: PolicyDecision, quota: Quota | None
    ) -> NoReturn:
        """Record the policy's deny and refuse; counted as a budget refusal when the use reported
        to the policy had reached the agreement's query budget."""
        self._s.recorder.record(
            ctx, base, outcome=outcome_of(decision), reasons=decision.reasons, result=decision.result
        )
        if quota is not None and base.input_doc["usage"]["queries_this_period"] >= quota.budget.queries:
            self._s.metrics.budget_refusals.labels(agreement=quota.agreement_id, budget="query").inc()
        raise refusal(decision)

    def _count_cells(self, released: Released) -> None:
        self._s.metrics.cells_released.inc(released.cells_released)
        self._s.metrics.cells_withheld.inc(released.cells_withheld)

    def _deny_privacy(
        self, ctx: RequestContext, base: AuditSubject, privacy: Privacy, result: Any
    ) -> NoReturn:
        self._s.recorder.record(ctx, base, outcome="deny", reasons=(privacy.refusal,), result=result)
        self._s.metrics.budget_refusals.labels(agreement=privacy.quota.agreement_id, budget="privacy").inc()
        raise PermissionDenied((privacy.refusal,))

    def _privacy_left(
        self, ctx: RequestContext, base: AuditSubject, privacy: Privacy | None, result: Any
    ) -> None:
        """Refuse, with the plain reason, when this period's privacy budget is spent (counted from
        the audit log); a count that cannot be read fails closed. Nothing to do without noise."""
        if privacy is None:
            return
        quota = privacy.quota
        try:
            used = self._s.store.queries_allowed(quota.agreement_id, privacy.since, privacy.until)
        except GatewayError as exc:
            self._s.recorder.record(ctx, base, outcome="error", reasons=(exc.message,), result=result)
            raise
        if used >= quota.budget.queries:
            self._deny_privacy(ctx, base, privacy, result)

    def _budget_use(
        self,
        ctx: RequestContext,
        base: AuditSubject,
        policy: PolicyState,
        agreement_id: str,
        input_doc: dict[str, Any],
    ) -> Quota | None:
        """For an agreement with a query budget: count the queries allowed under it this period
        (from the audit log), put the count in ``input_doc["usage"]`` for the policy, and return
        the quota the audit append re-checks under its lock. None without a budget."""
        budget = policy.budgets.get(agreement_id)
        if budget is None:
            return None
        period = budget_period(budget.period, parse_time(str(input_doc["now"])))
        try:
            used = self._s.store.queries_allowed(agreement_id, period.since, period.until)
        except GatewayError as exc:  # the budget cannot be checked: fail closed
            self._s.recorder.record(ctx, base, outcome="error", reasons=(exc.message,))
            raise
        input_doc["usage"] = period.usage(used)
        return Quota(agreement_id, budget)

    def _deny_spent(
        self, ctx: RequestContext, base: AuditSubject, policy: PolicyState, spent: BudgetSpent
    ) -> NoReturn:
        """Decide again on the count read under the audit lock, so the analyst gets the policy's
        own reason, and record that decision instead of the allow that was not written."""
        input_doc = {**base.input_doc, "usage": spent.usage}
        subject = dataclasses.replace(base, input_doc=input_doc)
        decision = self._s.decide(QUERY_RULE, input_doc, policy)
        if decision.allow:  # the policy must deny a spent budget; if it does not, fail closed
            reason = "the query policy allowed a query over its budget at the audit-time re-check"
            self._s.recorder.record(ctx, subject, outcome="error", reasons=(reason,), result=decision.result)
            raise PolicyEngineError(reason)
        self._s.recorder.record(
            ctx, subject, outcome=outcome_of(decision), reasons=decision.reasons, result=decision.result
        )
        self._s.metrics.budget_refusals.labels(agreement=base.agreement_id, budget="query").inc()
        raise refusal(decision)


def _combinations(value: Any) -> list[query_pb2.DimensionCombination]:
    """The listing's forbidden combinations, each a list of dimension names; anything else skipped."""
    combos = value if isinstance(value, list) else []
    return [
        query_pb2.DimensionCombination(dimensions=[str(d) for d in combo])
        for combo in combos
        if isinstance(combo, list)
    ]


def _budget_proto(budget: QueryBudget | None) -> query_pb2.QueryBudget | None:
    return None if budget is None else query_pb2.QueryBudget(queries=budget.queries, period=budget.period)


def _loggable(value: str) -> str:
    """An identifier as the audit log may hold it before validation: short and printable, or nothing."""
    return value if len(value) <= 64 and value.isascii() and value.isprintable() else ""


def cell_terms(obligations: Mapping[str, Any]) -> tuple[Dominance, bool]:
    """The dominance rule and whether empty cells show as zeros (DESIGN §9.4, §9.7); anything
    missing or outside what the agreement schema allows fails closed."""
    dominance, zeros = obligations.get("dominance"), obligations.get("zeros")
    terms = dominance if isinstance(dominance, Mapping) else {}
    n, percent = terms.get("n"), terms.get("percent")
    if not (
        isinstance(n, int) and isinstance(percent, int) and _whole_in(n, 1, 3) and _whole_in(percent, 50, 90)
    ) or zeros not in ("withhold", "show"):
        raise PolicyEngineError("policy decision carries no usable dominance rule or zeros choice")
    return Dominance(n, percent), zeros == "show"


def _whole_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _obligations(obligations: Mapping[str, Any], *, budgeted: bool) -> tuple[int, int, int]:
    """k, rounding base and cell cap from the decision; anything missing or odd fails closed,
    and so does a budget the policy names but the gateway did not count (``budgeted``)."""
    try:
        k, round_to, max_cells = (int(obligations[name]) for name in ("k", "round_to", "max_cells"))
    except (KeyError, TypeError, ValueError) as exc:
        raise PolicyEngineError("policy decision carries no usable disclosure obligations") from exc
    if k < K_FLOOR or round_to < 1 or max_cells < 1:
        raise PolicyEngineError("policy decision carries disclosure obligations below the consortium floor")
    if obligations.get("budget") is not None and not budgeted:
        raise PolicyEngineError("policy decision names a query budget the gateway did not count")
    return k, round_to, max_cells
