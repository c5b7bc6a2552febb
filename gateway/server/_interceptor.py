"""The cross-cutting concerns of every RPC, in one server interceptor (not in handlers):

- identity: the principal comes only from the verified peer certificate (DESIGN §4);
- log context: the decision id and principal are bound for every log line of the request;
- errors: GatewayError becomes its gRPC status and message; anything else becomes INTERNAL with
  no detail (the decision id lets an operator find the log line);
- metrics: one count and one latency observation per RPC.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import grpc
import structlog

from gateway._pb import query_pb2
from gateway.errors import GatewayError, Unauthenticated
from gateway.identity import Principal, principal_from_pem
from gateway.server._context import RequestContext, bind, reset
from gateway.server._metrics import Metrics
from gateway.server._recorder import Recorder

log = structlog.get_logger("gateway.rpc")
# Standard services answer without a principal (probes); they are still behind mutual TLS.
_OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
_AGGREGATE = f"/{query_pb2.DESCRIPTOR.services_by_name['Query'].full_name}/Aggregate"


class GatewayInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(
        self,
        trust_domain: str,
        known_agencies: Callable[[], frozenset[str]],
        recorder: Recorder,
        metrics: Metrics,
    ) -> None:
        self._trust_domain = trust_domain
        self._known_agencies = known_agencies
        self._recorder = recorder
        self._metrics = metrics

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        method: str = details.method
        if handler is None or method.startswith(_OPEN_PREFIXES):
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # no client-streaming methods yet

    def _principal(self, context: grpc.ServicerContext) -> Principal:
        # grpc-stubs types the values as bytes; at run time each is a list of bytes
        pems: Sequence[bytes] = (context.auth_context() or {}).get("x509_pem_cert") or ()  # type: ignore[assignment]
        if not pems:
            raise Unauthenticated("no client certificate was presented")
        return principal_from_pem(bytes(pems[0]), self._trust_domain, self._known_agencies())

    def _enter(self, method: str, context: grpc.ServicerContext) -> RequestContext:
        try:
            principal = self._principal(context)
        except Unauthenticated as exc:
            self._recorder.record_unauthenticated(method, exc.message, str(uuid.uuid4()))
            self._finish(method, exc.code, time.perf_counter())
            context.abort(exc.code, exc.message)
            raise  # unreachable: abort raises
        return RequestContext(principal, method)

    @contextmanager
    def _request(self, method: str, context: grpc.ServicerContext) -> Iterator[RequestContext]:
        """Identify the caller, bind the request and log context, map failures to a status."""
        ctx = self._enter(method, context)
        token = bind(ctx)
        structlog.contextvars.bind_contextvars(
            decision_id=ctx.decision_id, principal=ctx.principal.spiffe_id, agency=ctx.principal.agency
        )
        try:
            yield ctx
        except Exception as exc:
            self._fail(method, ctx, exc, context)
            raise  # unreachable: abort raises
        finally:
            structlog.contextvars.clear_contextvars()
            reset(token)
        self._finish(method, grpc.StatusCode.OK, ctx.started)

    def _fail(self, method: str, ctx: RequestContext, exc: Exception, context: grpc.ServicerContext) -> None:
        if isinstance(exc, GatewayError):
            code, message = exc.code, exc.message
            log.info("rpc_refused", code=code.name, error=type(exc).__name__)
        else:
            code, message = grpc.StatusCode.INTERNAL, f"internal error (decision {ctx.decision_id})"
            log.exception("rpc_internal_error", error=type(exc).__name__)
        self._finish(method, code, ctx.started)
        context.abort(code, message)

    def _finish(self, method: str, code: grpc.StatusCode, started: float) -> None:
        elapsed = time.perf_counter() - started
        self._metrics.rpcs.labels(method=method, code=code.name).inc()
        self._metrics.rpc_latency.labels(method=method).observe(elapsed)
        if method == _AGGREGATE:
            self._metrics.query_latency.labels(code=code.name).observe(elapsed)

    def _wrap_unary(self, method: str, behaviour: Callable[[Any, grpc.ServicerContext], Any]) -> Any:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            with self._request(method, context):
                return behaviour(request, context)

        return handle

    def _wrap_stream(
        self, method: str, behaviour: Callable[[Any, grpc.ServicerContext], Iterator[Any]]
    ) -> Any:
        def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with self._request(method, context):
                yield from behaviour(request, context)

        return handle
