"""What every handler shares: the loaded policy bundle (engine + catalogue) and the services
behind it. Bundle and catalogue are swapped together as one object so a reload is atomic: a
handler reads ``shared.policy`` once and passes that object on, so a request started before a
swap is decided, validated and audited under one revision from start to finish."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import QueryBudget
from gateway.catalogue import Catalogue, Dataset
from gateway.errors import ConfigError, PolicyEngineError
from gateway.ingest import BatchOpener
from gateway.policy._engine import PolicyDecision, PolicyEngine
from gateway.server._context import RequestContext
from gateway.server._metrics import Metrics
from gateway.server._recorder import Recorder
from gateway.store._base import Store
from gateway.store._schema import DIMENSION_MIN_WIDTH


@dataclass(frozen=True)
class PolicyState:
    engine: PolicyEngine
    catalogue: Catalogue
    # agreement id -> its query budget, from the same bundle: which use to count and report
    # to the query policy (input.usage) before it decides
    budgets: Mapping[str, QueryBudget] = field(default_factory=dict)

    @property
    def revision(self) -> str:
        return self.engine.revision


class Shared:
    def __init__(
        self,
        policy: PolicyState,
        store: Store,
        opener: BatchOpener,
        metrics: Metrics,
        *,
        noise_key: bytes = b"",
        audit_key: Ed25519PrivateKey | None = None,
    ) -> None:
        self.store = store
        self.audit_key = audit_key  # signs checkpoints and heads (keys.audit_signing)
        self.noise_key = noise_key  # HKDF of the rest key (gateway.disclosure.noise_key); b"": no noise
        self.opener = opener
        self.metrics = metrics
        self.recorder = Recorder(store, metrics, mask_engine=lambda: self.policy.engine)
        self.policy = policy
        self.swap_policy(policy)

    def decide(
        self, path: str, input_doc: Mapping[str, Any], policy: PolicyState | None = None
    ) -> PolicyDecision:
        """Evaluate ``input_doc``, the same document the audit entry records, under ``policy``
        (the state the handler read at its start; the live one if None)."""
        engine = (policy or self.policy).engine
        with self.metrics.policy_latency.time():
            decision = engine.decide(path, input_doc)
        if decision.error is not None:  # a deny the engine failed into, not one the policy made
            self.metrics.policy_failures.labels(failure=decision.failure or "engine_error").inc()
        return decision

    def query(self, path: str, input_doc: Mapping[str, Any], policy: PolicyState) -> Any:
        """The raw value of the rule at ``path`` (a listing), timed and its failures counted as
        ``decide``'s are; raises PolicyEngineError."""
        try:
            with self.metrics.policy_latency.time():
                return policy.engine.query(path, input_doc)
        except PolicyEngineError:
            self.metrics.policy_failures.labels(failure="engine_error").inc()
            raise

    def swap_policy(self, policy: PolicyState) -> None:
        """Serve ``policy`` from the next request on (one attribute store: atomic). The store
        takes its catalogue first, so that it is never behind the policy: the query's grid and
        ledger descriptions follow the policy's domains, and its counts the store's."""
        self.store.adopt_catalogue(policy.catalogue)
        self.policy = policy
        self.metrics.policy_bundle.info({"revision": policy.revision})


def check_storable(catalogue: Catalogue, stored: Catalogue) -> None:
    """ConfigError unless every dataset of ``catalogue`` fits the tables the store was opened
    with (``stored``): a running gateway does not alter its tables, so a reload may change
    agreements, contract versions and domains, but new datasets or columns need a restart."""
    for name, dataset in catalogue.datasets.items():
        where = f"data.catalogue.datasets.{name}"
        before = stored.datasets.get(name)
        if before is None:
            raise ConfigError(f"{where}: a new dataset needs a gateway restart to create its table")
        if _columns(dataset) != _columns(before):
            raise ConfigError(f"{where}: its columns changed; that needs a gateway restart")


def _columns(dataset: Dataset) -> frozenset[tuple[str, int]]:
    # what the table is built from (gateway/store/_schema.py): column names and text widths
    dims = {(d.name, max([DIMENSION_MIN_WIDTH, *(len(v) for v in d.domain)])) for d in dataset.dimensions}
    return frozenset(dims | {(m.name, 0) for m in dataset.measures})


def policy_input(ctx: RequestContext, action: str, request: Mapping[str, Any]) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "principal": ctx.principal.as_policy_input(),
        "action": action,
        "request": dict(request),
        "now": now,
    }
