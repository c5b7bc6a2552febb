"""An agreement's ``noise {epsilon, budget, period}`` term as the query handler applies it
(DESIGN §9.6): the noise of each release, and the privacy budget it is charged to.

Every answered query under a noisy agreement is one release charged ``epsilon``; the budget of a
calendar period (UTC, as for query budgets) allows floor(budget / epsilon) of them, counted from
the audit log like the query budget (allowed ``query`` entries of the period), shared by all the
agreement's analysts, and re-counted under the audit log's lock before an answer is recorded
(unless the agreement also has a query budget, which then takes the lock's one re-check; the
privacy count is then read just before, so two racing releases may both take the last one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.audit import QueryBudget, Quota, budget_period
from gateway.audit._budget import PERIODS, Period, parse_time
from gateway.disclosure import Noise
from gateway.errors import PolicyEngineError


@dataclass(frozen=True)
class Privacy:
    key: bytes
    epsilon: float
    bounds: Mapping[str, float]  # per summed column: the clamp bound (largest |value| of a record)
    quota: Quota  # releases allowed this period, for the count under the audit lock
    since: str
    until: str
    refusal: str  # the plain reason when the period's budget is spent (no count of people in it)

    def noise(self, dataset: str, data_version: int) -> Noise:
        return Noise(self.key, self.epsilon, dataset, data_version, self.bounds)


def privacy_terms(
    obligations: Mapping[str, Any], agreement_id: str, *, now: str, key: bytes
) -> Privacy | None:
    """None for an agreement without noise; PolicyEngineError (fail closed) for noise terms the
    schema would not let through, a missing clamp bound, or a gateway without a noise secret."""
    terms = obligations.get("noise")
    if terms is None:
        return None
    if not isinstance(terms, Mapping):
        raise PolicyEngineError("policy decision carries unusable noise terms")
    epsilon, budget, period = terms.get("epsilon"), terms.get("budget"), terms.get("period")
    if not (_positive(epsilon) and _positive(budget) and period in PERIODS):
        raise PolicyEngineError("policy decision carries unusable noise terms")
    if not key:
        raise PolicyEngineError("this gateway has no noise secret, so it cannot answer a noisy agreement")
    try:
        # decimal, so a budget of 1 at epsilon 0.1 is ten releases, not 9.999...
        releases = int(Decimal(str(budget)) / Decimal(str(epsilon)))
    except (InvalidOperation, OverflowError) as exc:
        raise PolicyEngineError("policy decision carries unusable noise terms") from exc
    when = budget_period(_period(period), parse_time(now))
    refusal = (
        f"agreement {agreement_id} has spent its privacy budget ({budget} at epsilon {epsilon} per "
        f"answer) for {when.label}; it renews on {when.end.date().isoformat()}"
    )
    return Privacy(
        key=key,
        epsilon=float(terms["epsilon"]),
        bounds=_bounds(obligations.get("clamp")),
        quota=Quota(agreement_id, QueryBudget(max(releases, 0), _period(period))),
        since=when.since,
        until=when.until,
        refusal=refusal,
    )


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf


def _period(value: Any) -> Period:
    for period in PERIODS:
        if period == value:
            return period
    raise PolicyEngineError("policy decision carries unusable noise terms")


def _bounds(clamp: Any) -> dict[str, float]:
    """Per summed column, the larger magnitude of its clamp bounds; nothing usable, no entry
    (Noise then refuses the sum rather than guess a scale)."""
    bounds: dict[str, float] = {}
    if isinstance(clamp, Mapping):
        for name, limits in clamp.items():
            if isinstance(limits, Mapping) and all(_number(limits.get(s)) for s in ("min", "max")):
                bounds[str(name)] = max(abs(float(limits["min"])), abs(float(limits["max"])))
    return bounds


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
