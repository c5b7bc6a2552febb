"""Talking to the gateway: one mutual-TLS gRPC channel, unary calls, bounded retries.

UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED (and INTERNAL, UNKNOWN, ABORTED: a fault on the
gateway's side that may clear) are retried with exponential backoff and
full jitter (sleep uniformly in [0, min(backoff_max_s, backoff_initial_s * 2**attempt)]), for at
most `retries` retries and within an overall deadline of timeout_s * (retries + 1) per call;
giving up raises TransientPushError. Every other status is a refusal retrying cannot fix and
raises PermanentPushError carrying the gateway's message (it names the field at fault).
PushBatch is idempotent by batch id, so a retry after a lost reply comes back DUPLICATE.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self, TypeVar

import grpc
from google.protobuf.message import Message

from agents._config import GatewaySettings
from agents._pb import common_pb2, ingest_pb2, ingest_pb2_grpc
from agents.errors import PermanentPushError, TransientPushError

RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        # a fault on the gateway's side (a bug, a conflict) may clear; the retries stay bounded
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.ABORTED,
    }
)
_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)


@dataclass(frozen=True)
class TlsMaterial:
    ca: bytes
    key: bytes
    cert: bytes


@dataclass
class GatewayClient:
    """The agent's side of the Ingest service; use as a context manager to close the channel."""

    settings: GatewaySettings
    tls: TlsMaterial
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.SystemRandom)

    def __post_init__(self) -> None:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.tls.ca, private_key=self.tls.key, certificate_chain=self.tls.cert
        )
        options: list[tuple[str, str | int]] = [
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
        ]
        if self.settings.server_name:
            options.append(("grpc.ssl_target_name_override", self.settings.server_name))
        self._channel = grpc.secure_channel(self.settings.address, credentials, options=options)
        self._stub = ingest_pb2_grpc.IngestStub(self._channel)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def get_contract(self, dataset: str) -> common_pb2.DatasetContract:
        request = ingest_pb2.GetContractRequest(dataset=dataset)
        return self._call(self._stub.GetContract, request, "the contract request")

    def push(self, sealed: ingest_pb2.SealedBatch, batch_id: str) -> ingest_pb2.PushAck:
        ack = self._call(self._stub.PushBatch, sealed, "a batch")
        if ack.batch_id != batch_id:
            raise PermanentPushError("gateway acknowledged a different batch id than the one sent")
        if ack.status not in (ingest_pb2.PushAck.STATUS_STORED, ingest_pb2.PushAck.STATUS_DUPLICATE):
            raise PermanentPushError("gateway acknowledged a batch with an unknown status")
        return ack

    def _call(
        self,
        method: grpc.UnaryUnaryMultiCallable[Request, Response],
        request: Request,
        what: str,
    ) -> Response:
        timeout = self.settings.timeout_s
        deadline = time.monotonic() + timeout * (self.settings.retries + 1)
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                return method(request, timeout=max(min(timeout, remaining), 0.001))
            except grpc.RpcError as exc:
                code: grpc.StatusCode = exc.code()
                details = exc.details() or "no details"
                if code not in RETRYABLE:
                    raise PermanentPushError(f"gateway refused {what}: {code.name}: {details}") from exc
                if attempt >= self.settings.retries:
                    raise TransientPushError(
                        f"gateway did not accept {what} after {attempt + 1} attempts: {code.name}: {details}"
                    ) from exc
                ceiling = min(self.settings.backoff_max_s, self.settings.backoff_initial_s * 2**attempt)
                delay = self.rng.uniform(0.0, ceiling)
                if time.monotonic() + delay >= deadline:
                    raise TransientPushError(
                        f"gateway did not accept {what} before the deadline: {code.name}: {details}"
                    ) from exc
                self.sleep(delay)
                attempt += 1
