"""Container health check: exit 0 when the gateway's health-only listener answers SERVING.

    python healthcheck.py [HOST:PORT] [SERVICE]     (default 127.0.0.1:8081, the whole server)

The gateway's main port requires a client certificate; [gateway] health_listen serves the gRPC
health service alone without TLS, which is what this asks. It prints one line saying why when
unhealthy (the status name or the gRPC error code), never anything the gateway holds."""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

TIMEOUT_S = 2.0


def main(argv: list[str]) -> int:
    address = argv[0] if argv else "127.0.0.1:8081"
    service = argv[1] if len(argv) > 1 else ""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_S)
        except grpc.RpcError as exc:
            sys.stderr.write(f"unhealthy: {exc.code().name}\n")
            return 1
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        sys.stderr.write(f"unhealthy: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
