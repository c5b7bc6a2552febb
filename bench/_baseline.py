"""The bare pipeline (DESIGN §12): HMAC + protobuf + AES-GCM + plain gRPC on loopback + bulk insert.

No policy, no signature, no HPKE, no checks, no TLS (an insecure loopback port): the ceiling the
agent → gateway path is judged against. Client and server share this process.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Protocol

import grpc
import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import make_url

from agents._pb import ingest_pb2
from bench._workspace import BareRecords, free_port
from gateway.store.testing import fresh_postgres_schema

BATCH = 1000
_METHOD = "/bench.Bare/Push"
_NONCE = 12
_DIMS = ("age_band", "sex", "district", "presentation")
_MEASURE = "length_of_stay_hours"
_COLUMNS = ("subject", "event_day", "event_month", *_DIMS, _MEASURE)
_EPOCH = date(1970, 1, 1)


class Sink(Protocol):
    def insert(self, rows: list[tuple[object, ...]]) -> None: ...


def _ddl(table: str, blob: str, real: str) -> str:
    dims = ", ".join(f"{d} TEXT NOT NULL" for d in _DIMS)
    return (
        f"CREATE TABLE {table} (subject {blob} NOT NULL, event_day INTEGER NOT NULL, "
        f"event_month TEXT NOT NULL, {dims}, {_MEASURE} {real} NOT NULL)"
    )


def _index_ddl(table: str) -> list[str]:
    """The same groupings the real store indexes (gateway/store/_schema.py)."""
    tail = f"event_month, subject, {_MEASURE}"
    return [
        f"CREATE INDEX ix_{table}_month_subject ON {table} ({tail})",
        *(f"CREATE INDEX ix_{table}_{d}_month_subject ON {table} ({d}, {tail})" for d in _DIMS),
        f"CREATE INDEX ix_{table}_subject_day ON {table} (subject, event_day)",
    ]


class SqliteSink:
    def __init__(self, path: Path, *, indexed: bool) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "cache_size=-65536"):
            self._conn.execute(f"PRAGMA {pragma}")
        self._conn.execute(_ddl("ed_visits", "BLOB", "REAL"))
        for statement in _index_ddl("ed_visits") if indexed else []:
            self._conn.execute(statement)
        marks = ", ".join("?" * len(_COLUMNS))
        self._insert = f"INSERT INTO ed_visits ({', '.join(_COLUMNS)}) VALUES ({marks})"

    def insert(self, rows: list[tuple[object, ...]]) -> None:
        self._conn.execute("BEGIN")
        self._conn.executemany(self._insert, rows)
        self._conn.execute("COMMIT")

    def count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM ed_visits").fetchone()[0])

    def close(self) -> None:
        self._conn.close()


class PostgresSink:
    def __init__(self, sqlalchemy_url: str, *, indexed: bool) -> None:
        dsn = make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._conn = psycopg.connect(dsn)
        with self._conn.cursor() as cur:
            cur.execute(_ddl("ed_visits", "BYTEA", "DOUBLE PRECISION"))
            for statement in _index_ddl("ed_visits") if indexed else []:
                cur.execute(statement)
        self._conn.commit()
        self._copy = f"COPY ed_visits ({', '.join(_COLUMNS)}) FROM STDIN"

    def insert(self, rows: list[tuple[object, ...]]) -> None:
        with self._conn.cursor() as cur, cur.copy(self._copy) as copy:
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
        plain = aead.decrypt(request[:_NONCE], request[_NONCE:], None)
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
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    method = grpc.unary_unary_rpc_method_handler(handler)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Bare", {"Push": method}),))
    port = server.add_insecure_port(f"127.0.0.1:{free_port()}")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(1).wait()


def _encode_dimension(column: ingest_pb2.DimensionColumn, values: list[str]) -> None:
    codes: dict[str, int] = {}
    out = [codes.setdefault(v, len(codes)) for v in values]
    column.dictionary.extend(codes)
    column.codes.extend(out)


def _send_all(records: BareRecords, address: str, key: bytes, link_key: bytes) -> None:
    keyed = hmac.new(link_key, digestmod=hashlib.sha256)
    aead = AESGCM(key)
    with grpc.insecure_channel(address) as channel:
        push = channel.unary_unary(_METHOD, request_serializer=None, response_deserializer=None)
        for start in range(0, len(records), BATCH):
            stop = start + BATCH
            tokens = []
            for raw in records.ids[start:stop]:
                mac = keyed.copy()
                mac.update(raw)
                tokens.append(mac.digest())
            batch = ingest_pb2.RecordBatch()
            batch.subject_tokens.extend(tokens)
            batch.event_days.extend(records.event_days[start:stop])
            for name in _DIMS:
                column = batch.dimensions.add()
                column.name = name
                _encode_dimension(column, records.dims[name][start:stop])
            measure = batch.measures.add()
            measure.name = _MEASURE
            measure.values.extend(records.measure[start:stop])
            nonce = os.urandom(_NONCE)
            push(nonce + aead.encrypt(nonce, batch.SerializeToString(), None), timeout=30)


def run_bare(records: BareRecords, backend: str, workdir: Path, pg_url: str, *, indexed: bool) -> float:
    """Seconds to move every record through the bare pipeline into a fresh table."""
    key, link_key = AESGCM.generate_key(bit_length=256), os.urandom(32)
    with _fresh_sink(backend, workdir, pg_url, indexed=indexed) as sink:
        with _loopback_server(_server_handler(key, sink)) as address:
            started = time.perf_counter()
            _send_all(records, address, key, link_key)
            elapsed = time.perf_counter() - started
        stored = sink.count()
    if stored != len(records):
        raise RuntimeError("bare pipeline: the table does not hold every record sent")
    return elapsed


_sink_numbers = itertools.count(1)


@contextmanager
def _fresh_sink(
    backend: str, workdir: Path, pg_url: str, *, indexed: bool
) -> Iterator[SqliteSink | PostgresSink]:
    if backend == "sqlite":
        path = workdir / f"bare-{next(_sink_numbers)}.db"
        sqlite_sink = SqliteSink(path, indexed=indexed)
        try:
            yield sqlite_sink
        finally:
            sqlite_sink.close()
        return
    with fresh_postgres_schema(pg_url, prefix="bench_bare") as url:
        pg_sink = PostgresSink(url, indexed=indexed)
        try:
            yield pg_sink
        finally:
            pg_sink.close()
