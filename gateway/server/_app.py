"""Assembling and running the gateway: settings ▶ keys, bundle, store ▶ gRPC server with mTLS."""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway._pb import audit_pb2, audit_pb2_grpc, ingest_pb2, ingest_pb2_grpc, query_pb2, query_pb2_grpc
from gateway._settings import GatewaySettings, load_gateway_keys
from gateway._tls import check_certificate, server_credentials
from gateway.audit import CheckpointPolicy, query_budgets
from gateway.catalogue import Catalogue
from gateway.disclosure import noise_key
from gateway.errors import ConfigError
from gateway.ingest import BatchOpener
from gateway.policy import PolicyEngine, make_engine
from gateway.policy._bundle import Bundle, load_checked_bundle
from gateway.policy._reload import PolicyReloader, ReloadOutcome, bundle_digest
from gateway.server._audit import AuditService
from gateway.server._checkpointer import Checkpointer
from gateway.server._health import HealthProber, Readiness, database_check, policy_check
from gateway.server._ingest import IngestService
from gateway.server._interceptor import GatewayInterceptor
from gateway.server._logging import configure_logging
from gateway.server._metrics import Metrics
from gateway.server._query import QueryService
from gateway.server._state import PolicyState, Shared, check_storable
from gateway.store import open_store

log = structlog.get_logger("gateway")
SERVICES = (
    ingest_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name,
    query_pb2.DESCRIPTOR.services_by_name["Query"].full_name,
    audit_pb2.DESCRIPTOR.services_by_name["Audit"].full_name,
)


def checked_bundle(root: Path) -> tuple[Bundle, Catalogue]:
    """The bundle under ``root`` and its catalogue, checked as the gateway serves them (at start,
    on reload, and in ``bench/run.py policy``); ConfigError names the file (and line) at fault."""
    bundle = load_checked_bundle(root)  # schemas and references, each problem at file:line
    return bundle, Catalogue.from_data(bundle.data)


def load_policy_state(
    settings: GatewaySettings, *, previous: PolicyState | None = None, stored: Catalogue | None = None
) -> PolicyState:
    """Bundle, catalogue and engine, each checked; ConfigError names the file (and line) at fault.

    On a reload, ``previous`` is the state serving and ``stored`` the catalogue the store's tables
    were built from. An engine that keeps state outside this process (an OPA server) may offer
    ``reload(bundle) -> PolicyEngine`` to be handed the new bundle; any other is built afresh."""
    bundle, catalogue = checked_bundle(settings.policy_bundle)
    if stored is not None:
        check_storable(catalogue, stored)
    reload = getattr(previous.engine, "reload", None) if previous is not None else None
    if callable(reload):
        engine: PolicyEngine = reload(bundle)
    else:
        engine = make_engine(
            settings.policy_engine, bundle, opa_url=settings.opa_url, timeout_ms=settings.policy_timeout_ms
        )
    budgets = query_budgets(bundle.data.get("agreements"))
    return PolicyState(engine=engine, catalogue=catalogue, budgets=budgets)


@dataclass
class Gateway:
    """A configured, not yet started gateway. ``start()`` binds and returns the port."""

    settings: GatewaySettings
    shared: Shared
    server: grpc.Server
    health: health.HealthServicer
    reloader: PolicyReloader[PolicyState]
    checkpointer: Checkpointer | None = None
    port: int = 0
    health_port: int = 0  # of the plaintext health-only listener, when [gateway] health_listen is set
    health_server: grpc.Server | None = None
    metrics_port: int = 0  # where /metrics is served; 0: not served
    prober: HealthProber = field(init=False)

    def __post_init__(self) -> None:
        shared = self.shared
        self.prober = HealthProber(
            {
                "database": database_check(shared.store.ping, self.settings.store_url),
                "policy_engine": policy_check(lambda: shared.policy.engine),
            },
            self.settings.observability.health_interval_ms / 1000,
            shared.metrics,
            on_change=self.set_readiness,
        )

    def start(self) -> int:
        self.port = self.server.add_secure_port(self.settings.listen, server_credentials(self.settings))
        if self.port == 0:
            raise ConfigError(f"gateway.listen: cannot bind {self.settings.listen}")
        if self.settings.health_listen is not None:
            self.health_server, self.health_port = _health_only_server(
                self.health, self.settings.health_listen
            )
        obs = self.settings.observability
        if obs.metrics_port:
            try:
                self.metrics_port = self.shared.metrics.serve(obs.metrics_port, obs.metrics_address)
            except OSError as exc:
                raise ConfigError(
                    f"observability.metrics_port: cannot bind {obs.metrics_address}:{obs.metrics_port}"
                ) from exc
        self.server.start()
        if self.health_server is not None:
            self.health_server.start()
        self.reloader.start()
        if self.checkpointer is not None:
            self.checkpointer.start()
        self.prober.start()  # the first status is measured before the log says we started
        health = {"health_port": self.health_port} if self.health_server is not None else {}
        log.info("gateway_started", port=self.port, revision=self.shared.policy.revision, **health)
        return self.port

    def set_readiness(self, readiness: Readiness) -> None:
        """Every service SERVING when every dependency answers, else NOT_SERVING."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if readiness.ready
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICES):
            self.health.set(name, status)

    def reload_policy(self, timeout_s: float = 60.0) -> ReloadOutcome:
        """Load the bundle directory again now and return what came of it (the started gateway's
        watcher does the work, as on SIGHUP)."""
        return self.reloader.reload(timeout_s)

    def request_policy_reload(self) -> None:
        """Reload the bundle soon, without waiting: what a SIGHUP handler calls."""
        self.reloader.request()

    def stop(self, grace: float = 2.0) -> None:
        self.prober.stop()
        self.health.enter_graceful_shutdown()
        self.reloader.stop()
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.server.stop(grace).wait()
        if self.health_server is not None:
            self.health_server.stop(0).wait()
        self.shared.metrics.stop_serving()
        self.shared.store.close()
        log.info("gateway_stopped")

    def wait(self) -> None:
        self.server.wait_for_termination()


def build_gateway(settings: GatewaySettings, metrics: Metrics | None = None) -> Gateway:
    """Everything is read and checked here, once; a bad file is a ConfigError naming it."""
    if not structlog.is_configured():  # structlog's default pretty tracebacks show local variables
        configure_logging(settings.log_level, settings.log_format)
    for path in (settings.tls.ca, settings.tls.cert):
        check_certificate(path)
    keys = load_gateway_keys(settings)
    digest = bundle_digest(settings.policy_bundle)  # before loading: an edit meanwhile is seen later
    policy = load_policy_state(settings)
    checkpoints = CheckpointPolicy(
        keys.audit_signing, every=settings.audit.checkpoint_every, seconds=settings.audit.checkpoint_seconds
    )
    store = open_store(
        settings.store_url,
        policy.catalogue,
        settings.store.connection,
        indexes=settings.store.indexes,
        checkpoints=checkpoints,
    )
    metrics = metrics or Metrics()
    opener = BatchOpener(keys.hpke_private, keys.rest_key, keys.agency_keys)
    shared = Shared(
        policy, store, opener, metrics, noise_key=noise_key(keys.rest_key), audit_key=keys.audit_signing
    )
    reloader = _reloader(settings, shared, digest)
    interceptor = GatewayInterceptor(
        settings.trust_domain, lambda: shared.policy.catalogue.agencies, shared.recorder, metrics
    )
    limit = settings.max_message_mb * 1024 * 1024
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="rpc"),
        interceptors=[interceptor],
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)],
    )
    ingest_pb2_grpc.add_IngestServicer_to_server(IngestService(shared), server)
    query_pb2_grpc.add_QueryServicer_to_server(QueryService(shared), server)
    audit_pb2_grpc.add_AuditServicer_to_server(AuditService(shared), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    return Gateway(
        settings=settings,
        shared=shared,
        server=server,
        health=health_servicer,
        reloader=reloader,
        checkpointer=Checkpointer(store, settings.audit.checkpoint_seconds),
    )


def _health_only_server(servicer: health.HealthServicer, listen: str) -> tuple[grpc.Server, int]:
    """A second server, without TLS, holding only the health service (the same servicer, so it
    answers exactly as the mTLS port does). Kubernetes' `grpc:` probe and plain health checkers
    cannot present a client certificate; what they read here is SERVING or NOT_SERVING per
    service name, nothing about data or callers, and no other service is reachable without mTLS."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="health"),
        options=[("grpc.so_reuseport", 0)],  # a port already taken is an error, not a shared port
    )
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError:  # grpcio raises where it used to return 0
        port = 0
    if port == 0:
        raise ConfigError(f"gateway.health_listen: cannot bind {listen}")
    return server, port


def _reloader(settings: GatewaySettings, shared: Shared, digest: str) -> PolicyReloader[PolicyState]:
    stored = shared.policy.catalogue
    metrics = shared.metrics

    def counted(outcome: ReloadOutcome) -> None:
        if outcome.status != "unchanged":
            metrics.policy_reloads.labels(outcome=outcome.status).inc()
        metrics.policy_reload_failing.set(1 if outcome.status == "failed" else 0)

    return PolicyReloader(
        settings.policy_bundle,
        load=lambda: load_policy_state(settings, previous=shared.policy, stored=stored),
        install=shared.swap_policy,
        serving=lambda: shared.policy.revision,
        loaded_digest=digest,
        interval_s=settings.policy.reload_interval_s,
        on_outcome=counted,
    )
