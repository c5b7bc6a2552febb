"""Prometheus metrics (DESIGN §11), in a registry of the gateway's own so tests can run many."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
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
        self.batches = Counter(
            "datashare_ingest_batches", "Batches by dataset and outcome", ["dataset", "outcome"], registry=r
        )
        self.cells_withheld = Counter(
            "datashare_cells_withheld", "Query cells withheld by disclosure control", registry=r
        )
        self.audit_failures = Counter(
            "datashare_audit_write_failures", "Audit entries that could not be written", registry=r
        )
        self.audit_mask_failures = Counter(
            "datashare_audit_mask_failures",
            "Decisions denied because the log mask policy failed (the entry was stored without input)",
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

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        start_http_server(port, addr=addr, registry=self.registry)
