"""Per-request context set by the interceptor: who is calling, and since when."""

from __future__ import annotations

import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field

from gateway.identity import Principal


@dataclass(frozen=True)
class RequestContext:
    principal: Principal
    method: str
    decision_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.perf_counter)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0


_CURRENT: ContextVar[RequestContext | None] = ContextVar("datashare_request", default=None)


def current() -> RequestContext:
    ctx = _CURRENT.get()
    if ctx is None:  # a handler ran without the interceptor: a wiring bug, never a caller's fault
        raise RuntimeError("no request context: the gateway interceptor is not installed")
    return ctx


def bind(ctx: RequestContext | None) -> object:
    return _CURRENT.set(ctx)


def reset(token: object) -> None:
    _CURRENT.reset(token)  # type: ignore[arg-type]
