"""What every handler shares: the loaded policy bundle (engine + catalogue) and the services
behind it. Bundle and catalogue are swapped together as one object so a reload is atomic."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.catalogue import Catalogue
from gateway.ingest import BatchOpener
from gateway.policy._engine import PolicyDecision, PolicyEngine
from gateway.server._context import RequestContext
from gateway.server._metrics import Metrics
from gateway.server._recorder import Recorder
from gateway.store._base import Store


@dataclass(frozen=True)
class PolicyState:
    engine: PolicyEngine
    catalogue: Catalogue

    @property
    def revision(self) -> str:
        return self.engine.revision


class Shared:
    def __init__(self, policy: PolicyState, store: Store, opener: BatchOpener, metrics: Metrics) -> None:
        self.policy = policy
        self.store = store
        self.opener = opener
        self.metrics = metrics
        self.recorder = Recorder(store, metrics)

    def decide(self, path: str, input_doc: Mapping[str, Any]) -> PolicyDecision:
        """Evaluate ``input_doc``, the same document the audit entry records."""
        with self.metrics.policy_latency.time():
            return self.policy.engine.decide(path, input_doc)


def policy_input(ctx: RequestContext, action: str, request: Mapping[str, Any]) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "principal": ctx.principal.as_policy_input(),
        "action": action,
        "request": dict(request),
        "now": now,
    }
