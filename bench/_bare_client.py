"""The bare pipeline's client, run as its own process like the real agent (DESIGN §12):
per batch, HMAC-SHA256 of every id (a pre-keyed object, copied), a protobuf RecordBatch,
AES-256-GCM, one unary gRPC call on the loopback port; the next batch is built while up to
``IN_FLIGHT`` calls are on the wire, as the agent does.

    python -m bench._bare_client ADDRESS BATCH_FILE   (AES key and link key as hex lines on stdin)

Prints one JSON line: records sent and the seconds from the first batch read to the last
acknowledgement (interpreter start-up and imports excluded).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import time
from collections import deque
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agents._pb import ingest_pb2
from bench._workspace import BareBatch, read_bare_batches

METHOD = "/bench.Bare/Push"
NONCE_BYTES = 12
MEASURE = "length_of_stay_hours"
IN_FLIGHT = 2  # the agent's default max_in_flight


def _encode_dimension(column: ingest_pb2.DimensionColumn, values: list[str]) -> None:
    codes: dict[str, int] = {}
    out = [codes.setdefault(v, len(codes)) for v in values]
    column.dictionary.extend(codes)
    column.codes.extend(out)


def _sealed(batch: BareBatch, keyed: hmac.HMAC, aead: AESGCM) -> bytes:
    ids, days, dims, measure = batch
    tokens = []
    for raw in ids:
        mac = keyed.copy()
        mac.update(raw)
        tokens.append(mac.digest())
    message = ingest_pb2.RecordBatch()
    message.subject_tokens.extend(tokens)
    message.event_days.extend(days)
    for name, values in dims.items():
        column = message.dimensions.add()
        column.name = name
        _encode_dimension(column, values)
    column_m = message.measures.add()
    column_m.name = MEASURE
    column_m.values.extend(measure)
    nonce = os.urandom(NONCE_BYTES)
    return nonce + aead.encrypt(nonce, message.SerializeToString(), None)


def send_all(address: str, batches: Path, key: bytes, link_key: bytes) -> tuple[int, float]:
    keyed = hmac.new(link_key, digestmod=hashlib.sha256)
    aead = AESGCM(key)
    sent = 0
    with grpc.insecure_channel(address) as channel:
        push = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        pending: deque[grpc.Future[bytes]] = deque()
        started = time.perf_counter()
        for batch in read_bare_batches(batches):
            if len(pending) >= IN_FLIGHT:
                pending.popleft().result()
            pending.append(push.future(_sealed(batch, keyed, aead), timeout=60))
            sent += len(batch[0])
        while pending:
            pending.popleft().result()
        elapsed = time.perf_counter() - started
    return sent, elapsed


def main() -> int:
    address, batches = sys.argv[1], Path(sys.argv[2])
    key, link_key = (bytes.fromhex(line) for line in sys.stdin.read().split())
    sent, elapsed = send_all(address, batches, key, link_key)
    print(json.dumps({"records": sent, "seconds": elapsed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
