"""Prometheus metrics (DESIGN §11), in a registry of the gateway's own so tests can run many.

Labels are bounded by code or by configuration, never by what a caller sends: method names,
status codes, fixed reason words, and dataset, agency and agreement names that the policy bundle
defines (a batch naming a dataset the catalogue lacks is counted under ``?``). No principal id,
pseudonym, value or free text is ever a label."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNKNOWN = "?"  # the label of a dataset or agreement the loaded bundle does not define


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.rpcs = Counter(
            "datashare_rpcs", "RPCs handled, by method and status code", ["method", "code"], registry=r
        )
        self.rpc_latency = Histogram(
            "datashare_rpc_latency_seconds",
            "RPC latency by method",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.query_latency = Histogram(
            "datashare_query_latency_seconds",
            "Aggregate query latency, from the call's arrival to its answer or refusal, by status code",
            ["code"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "datashare_decisions", "Policy decisions by action and outcome", ["action", "outcome"], registry=r
        )
        self.policy_latency = Histogram(
            "datashare_policy_latency_seconds",
            "Policy evaluation latency",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.records_ingested = Counter(
            "datashare_ingest_records", "Records stored, by dataset", ["dataset"], registry=r
        )
        self.records_rejected = Counter(
            "datashare_ingest_records_rejected",
            "Records in refused batches (as their header counts them), by dataset and reason class",
            ["dataset", "reason"],
            registry=r,
        )
        self.batches = Counter(
            "datashare_ingest_batches",
            "Batches by dataset, sending agency and outcome (stored, duplicate, rejected, denied, failed)",
            ["dataset", "agency", "outcome"],
            registry=r,
        )
        self.batches_rejected = Counter(
            "datashare_ingest_batches_rejected",
            "Batches refused, by dataset and reason class (header, signature, seal, contract, policy, ...)",
            ["dataset", "reason"],
            registry=r,
        )
        self.cells_released = Counter(
            "datashare_cells_released", "Query grid cells released in full", registry=r
        )
        self.cells_withheld = Counter(
            "datashare_cells_withheld",
            # not by rule: which rule withheld what is not said to the analyst (a cell withheld
            # for an earlier answer looks like any other), and a scrape after one query would say it
            "Query grid cells withheld, whatever the rule",
            registry=r,
        )
        self.audit_latency = Histogram(
            "datashare_audit_write_latency_seconds",
            "Audit entry append latency (chain lock, hash and commit)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.audit_failures = Counter(
            "datashare_audit_write_failures", "Audit entries that could not be written", registry=r
        )
        self.audit_mask_failures = Counter(
            "datashare_audit_mask_failures",
            "Decisions whose log mask policy failed (stored without input; an allow was denied)",
            registry=r,
        )
        self.budget_refusals = Counter(
            "datashare_budget_refusals",
            "Queries refused because an agreement's budget for the period is spent (budget: query, privacy)",
            ["agreement", "budget"],
            registry=r,
        )
        self.policy_failures = Counter(
            "datashare_policy_engine_failures",
            "Decisions denied because the policy engine failed, by failure (timeout, unreachable, ...)",
            ["failure"],
            registry=r,
        )
        # the live policy revision is readable here without a gRPC client (reload, DESIGN §8)
        self.policy_bundle = Info("datashare_policy_bundle", "The policy bundle revision serving", registry=r)
        self.policy_reloads = Counter(
            "datashare_policy_reloads",
            "Policy bundle reloads by outcome (reloaded, failed)",
            ["outcome"],
            registry=r,
        )
        self.policy_reload_failing = Gauge(
            "datashare_policy_reload_failing",
            "1 while the bundle on disk fails to load and the last good revision serves",
            registry=r,
        )
        self.ready = Gauge(
            "datashare_ready",
            "1 while the health service reports SERVING: the database and the policy engine answer",
            registry=r,
        )
        self.dependency_up = Gauge(
            "datashare_dependency_up",
            "1 while the dependency (database, policy_engine) answered its last probe in time",
            ["dependency"],
            registry=r,
        )

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve /metrics over HTTP on ``addr:port`` (0: any free port) and return the port."""
        server, thread = start_http_server(port, addr=addr, registry=self.registry)
        self._server, self._thread = server, thread
        return int(server.server_port)

    def stop_serving(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = self._thread = None
