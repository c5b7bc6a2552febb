"""The gRPC server: Ingest, Query and Audit behind one interceptor, plus health and reflection."""

from gateway.server._app import Gateway, build_gateway, load_policy_state
from gateway.server._logging import configure_logging
from gateway.server._metrics import Metrics

__all__ = ["Gateway", "Metrics", "build_gateway", "configure_logging", "load_policy_state"]
