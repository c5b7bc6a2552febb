"""The bare pipeline (DESIGN §12): HMAC + protobuf + AES-GCM + plain gRPC on loopback + bulk insert.

No policy, no signature, no HPKE, no checks, no TLS (an insecure loopback port), no index on the
table: the ceiling the agent → gateway path is judged against.

Two processes, like the real path: the server (AES-GCM open, protobuf parse, bulk insert) runs in
this process and the client (``bench._bare_client``: HMAC, protobuf, AES-GCM, gRPC) in a child,
so each side has its own interpreter lock, as the agent and the gateway do. Client and server in
one process would share one lock and make the ceiling lower than the real path's, flattering
the ratio.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Protocol

import grpc
import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import make_url

from agents._pb import ingest_pb2
from bench._bare_client import IN_FLIGHT, MEASURE, NONCE_BYTES
from bench._child import run_child
from bench._workspace import free_port
from gateway.store._bulk import use_bytes_dumper
from gateway.store.testing import fresh_postgres_schema

REPO_ROOT = Path(__file__).resolve().parent.parent
CLIENT_TIMEOUT_S = 1800
_DIMS = ("age_band", "sex", "district", "presentation")
_COLUMNS = ("subject", "event_day", "event_month", *_DIMS, MEASURE)
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class BareRun:
    records: int
    seconds: float  # the client's first batch to its last acknowledgement
    client_cpu_s: float
    server_cpu_s: float  # this process while the client ran: gRPC server, AES-GCM, parse, insert
    client_peak_rss_kb: int


class Sink(Protocol):
    def insert(self, rows: list[tuple[object, ...]]) -> None: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


def _ddl(table: str, blob: str, real: str) -> str:
    dims = ", ".join(f"{d} TEXT NOT NULL" for d in _DIMS)
    return (
        f"CREATE TABLE {table} (subject {blob} NOT NULL, event_day INTEGER NOT NULL, "
        f"event_month TEXT NOT NULL, {dims}, {MEASURE} {real} NOT NULL)"
    )


class SqliteSink:
    """The gateway's pragmas (WAL, synchronous=NORMAL, 64 MB cache), one transaction per batch."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "cache_size=-65536"):
            self._conn.execute(f"PRAGMA {pragma}")
        self._conn.execute(_ddl("ed_visits", "BLOB", "REAL"))
        marks = ", ".join("?" * len(_COLUMNS))
        self._insert = f"INSERT INTO ed_visits ({', '.join(_COLUMNS)}) VALUES ({marks})"
        self._lock = threading.Lock()  # one writer, as the gateway's store has

    def insert(self, rows: list[tuple[object, ...]]) -> None:
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.executemany(self._insert, rows)
            self._conn.execute("COMMIT")

    def count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM ed_visits").fetchone()[0])

    def close(self) -> None:
        self._conn.close()


class PostgresSink:
    """Binary COPY with declared column types (the store's own path, gateway/store/_bulk.py,
    and the fastest psycopg offers: values packed in C, nothing parsed from text by the
    server), one transaction per batch."""

    def __init__(self, sqlalchemy_url: str) -> None:
        dsn = make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._conn = psycopg.connect(dsn)
        with self._conn.cursor() as cur:
            cur.execute(_ddl("ed_visits", "BYTEA", "DOUBLE PRECISION"))
        self._conn.commit()
        self._copy = f"COPY ed_visits ({', '.join(_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
        self._types = ["bytea", "int4", "text", *("text" for _ in _DIMS), "float8"]
        self._lock = threading.Lock()

    def insert(self, rows: list[tuple[object, ...]]) -> None:
        with self._lock:
            with self._conn.cursor() as cur:
                use_bytes_dumper(cur)  # as the store does (gateway/store/_bulk.py)
                with cur.copy(self._copy) as copy:
                    copy.set_types(self._types)
                    for row in rows:
                        copy.write_row(row)
            self._conn.commit()

    def count(self) -> int:
        with self._conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM ed_visits")
            found = cur.fetchone()
        return int(found[0]) if found else 0

    def close(self) -> None:
        self._conn.close()


def _month_of(cache: dict[int, str], day: int) -> str:
    month = cache.get(day)
    if month is None:
        month = cache[day] = (_EPOCH + timedelta(days=day)).strftime("%Y-%m")
    return month


def _server_handler(key: bytes, sink: Sink) -> Callable[[bytes, grpc.ServicerContext], bytes]:
    aead = AESGCM(key)
    months: dict[int, str] = {}

    def push(request: bytes, _context: grpc.ServicerContext) -> bytes:
        plain = aead.decrypt(request[:NONCE_BYTES], request[NONCE_BYTES:], None)
        batch = ingest_pb2.RecordBatch.FromString(plain)
        dim_values = [[d.dictionary[c] for c in d.codes] for d in batch.dimensions]
        month_col = [_month_of(months, day) for day in batch.event_days]
        rows = list(
            zip(
                batch.subject_tokens,
                batch.event_days,
                month_col,
                *dim_values,
                batch.measures[0].values,
                strict=True,
            )
        )
        sink.insert(rows)
        return b""

    return push


@contextmanager
def _loopback_server(handler: Callable[[bytes, grpc.ServicerContext], bytes]) -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=IN_FLIGHT))
    method = grpc.unary_unary_rpc_method_handler(handler)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Bare", {"Push": method}),))
    port = server.add_insecure_port(f"127.0.0.1:{free_port()}")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(1).wait()


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_bare(batches: Path, expected: int, backend: str, workdir: Path, pg_url: str) -> BareRun:
    """Every record of ``batches`` through the bare pipeline into a fresh table."""
    key, link_key = AESGCM.generate_key(bit_length=256), os.urandom(32)
    with _fresh_sink(backend, workdir, pg_url) as sink:
        with _loopback_server(_server_handler(key, sink)) as address:
            cpu_before = _cpu_s()
            child = run_child(
                [sys.executable, "-m", "bench._bare_client", address, str(batches)],
                cwd=REPO_ROOT,
                timeout_s=CLIENT_TIMEOUT_S,
                stdin=f"{key.hex()}\n{link_key.hex()}\n".encode(),
            )
            server_cpu = _cpu_s() - cpu_before
        stored = sink.count()
    if child.returncode != 0:
        sys.stderr.write(child.stderr[-4000:])
        raise RuntimeError(f"bare client exited with status {child.returncode}")
    report = json.loads(child.stdout.strip().splitlines()[-1])
    if stored != expected or report["records"] != expected:
        raise RuntimeError("bare pipeline: the table does not hold every record sent")
    return BareRun(
        records=expected,
        seconds=float(report["seconds"]),
        client_cpu_s=child.cpu_s,
        server_cpu_s=server_cpu,
        client_peak_rss_kb=child.peak_rss_kb,
    )


_sink_numbers = itertools.count(1)


@contextmanager
def _fresh_sink(backend: str, workdir: Path, pg_url: str) -> Iterator[Sink]:
    if backend == "sqlite":
        sink: Sink = SqliteSink(workdir / f"bare-{next(_sink_numbers)}.db")
        try:
            yield sink
        finally:
            sink.close()
        return
    with fresh_postgres_schema(pg_url, prefix="bench_bare") as url:
        sink = PostgresSink(url)
        try:
            yield sink
        finally:
            sink.close()
