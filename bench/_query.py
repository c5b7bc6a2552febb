"""``query``: what an analyst's aggregate costs end to end, beside the bare SQL GROUP BY.

Per backend, a fresh database is loaded through the real store (``SqlStore.store_batch``, the
synthetic rows of bench/_indexes.py: ``--records`` ED visits, a third as many police incidents),
then a real gateway is started on it (development PKI, mutual TLS on loopback, the shipped policy
bundle, audit on) and, per index profile, timed in the same run and alternately:

- ``bare``: the analyst's question as one hand-written GROUP BY, run through SQLAlchemy on a
  connection of its own to the same database (SQLite with the gateway's page-cache size), rows
  fetched;
- ``gateway``: the same question as an ``Aggregate`` call over gRPC as ``health-analyst``, wall
  clock in the client: validation, policy decision, the store's SQL, disclosure control (grid,
  primary and secondary suppression, rounding), the audit append, the reply.

Questions: ``2dim``, distinct subjects and the sum of ``length_of_stay_hours`` by district and
month over the whole three years (720 cells); ``link``, the same figures for overdose visits with
a drugs, welfare-check or disturbance police contact 0-30 days before, by district and year.
One untimed warm-up of each, then ``--repeat`` timed pairs; the p50 of each and their ratio are
reported. The ``query`` index profile, when asked for, is measured after the ``ingest`` one on
the same rows (the store builds its indexes at the gateway's start-up, untimed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import Connection, Executable, create_engine, text
from sqlalchemy.pool import NullPool

from bench._indexes import PG_URL, RECORDS_PER_PERSON, _analyze, _load, shipped_catalogue
from bench._real import _index_profile
from bench._workspace import free_port
from gateway._pb import query_pb2, query_pb2_grpc
from gateway._settings import ClientProfile, GatewaySettings
from gateway._tls import client_channel
from gateway.catalogue import Catalogue
from gateway.pki import init_dev_pki
from gateway.query import validate_request
from gateway.server import Gateway, build_gateway
from gateway.store import SqlStore, open_store
from gateway.store._aggregate import compile_aggregate
from gateway.store._schema import build_schema
from gateway.store.testing import fresh_postgres_schema

TARGET_RATIO = 1.3
ANALYST = "health-analyst"
SQLITE_CACHE_MB = 64  # the gateway's default [store] page cache, so both sides read alike
MONTHS = ("2024-01", "2026-12")  # bench/_indexes.py spreads events over these three years
INCIDENTS = ("disturbance", "drugs", "welfare_check")
_SUBJECTS = query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUBJECTS)
_STAY = query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUM, field="length_of_stay_hours")


def _request(**fields: object) -> query_pb2.AggregateRequest:
    return query_pb2.AggregateRequest(
        agreement_id="ag-2026-001",
        purpose="overdose-prevention",
        dataset="ed_visits",
        measures=[_SUBJECTS, _STAY],
        months=query_pb2.MonthRange(first=MONTHS[0], last=MONTHS[1]),
        **fields,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class Question:
    name: str
    request: query_pb2.AggregateRequest
    bare_sql: str | None  # None: the store's own statement for the cells (see _bare_statement)
    cells: int  # grid cells the gateway answers with


QUESTIONS = (
    Question(
        "2dim",
        _request(group_by=["district", "month"]),
        "SELECT district, event_month, COUNT(DISTINCT subject), SUM(length_of_stay_hours) "
        "FROM ds_ed_visits WHERE event_month BETWEEN :first AND :last GROUP BY district, event_month",
        20 * 36,
    ),
    Question(
        "link",
        _request(
            group_by=["district", "year"],
            filters=[query_pb2.ValueFilter(dimension="presentation", values=["overdose"])],
            link=query_pb2.Link(
                dataset="police_incidents",
                days_before=30,
                filters=[query_pb2.ValueFilter(dimension="incident_type", values=list(INCIDENTS))],
            ),
        ),
        None,
        20 * 3,
    ),
)


@dataclass(frozen=True)
class QueryRow:
    backend: str
    indexes: str
    question: str
    records: int
    bare_p50_s: float
    gateway_p50_s: float
    ratio_p50: float
    meets_target: bool
    bare_s: list[float]
    gateway_s: list[float]


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _pairs(
    bare: Callable[[], object], gateway: Callable[[], object], repeat: int
) -> tuple[list[float], list[float]]:
    bare(), gateway()  # warm-up: page cache, pooled connections, the TLS session
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):  # alternated, so a drift in machine load hits both sides alike
        times[0].append(_timed(bare))
        times[1].append(_timed(gateway))
    return times


@contextmanager
def _gateway(settings: GatewaySettings, url: str, profile: str) -> Iterator[Gateway]:
    settings = dataclasses.replace(
        settings,
        store=dataclasses.replace(settings.store, url=url, indexes=profile),
        # one log line per query would interleave with the table; warnings still show
        observability=dataclasses.replace(settings.observability, log_level="warning"),
    )
    with _index_profile(profile):
        gateway = build_gateway(settings)
    store = gateway.shared.store
    if not isinstance(store, SqlStore) or store.index_profile != profile:
        raise RuntimeError(f"gateway store: index profile is not {profile}")
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop(grace=0.5)


@contextmanager
def _bare_connection(url: str) -> Iterator[Connection]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if url.startswith("sqlite"):
                conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_MB * 1024}")
            yield conn
    finally:
        engine.dispose()


@dataclass(frozen=True)
class _Plan:
    records: int
    profiles: list[str]
    repeat: int
    root: Path
    catalogue: Catalogue


def _measure_backend(plan: _Plan, backend: str, url: str) -> list[QueryRow]:
    people = [os.urandom(32) for _ in range(max(100, round(plan.records / RECORDS_PER_PERSON)))]
    store = open_store(url, plan.catalogue, indexes="ingest")
    try:
        _load(store, plan.catalogue, "ed_visits", plan.records, people)
        _load(store, plan.catalogue, "police_incidents", max(1, plan.records // 3), people)
    finally:
        store.close()
    listen = f"127.0.0.1:{free_port()}"
    layout = init_dev_pki(plan.root / f"pki-{backend}", listen=listen)
    settings = dataclasses.replace(GatewaySettings.from_file(layout.gateway_config), listen=listen)
    analyst = dataclasses.replace(ClientProfile.from_file(layout.client_profile(ANALYST)), address=listen)
    rows = []
    for profile in plan.profiles:
        with _gateway(settings, url, profile):
            if backend == "postgres":
                _analyze(url)  # fresh planner statistics (and for new indexes), as autovacuum would
            channel = client_channel(analyst)
            try:
                stub = query_pb2_grpc.QueryStub(channel)
                with _bare_connection(url) as conn:
                    for question in QUESTIONS:
                        bare = _bare_call(conn, _bare_statement(question, plan.catalogue, profile))
                        bare_s, gateway_s = _pairs(bare, _gateway_call(stub, question), plan.repeat)
                        rows.append(_row(backend, profile, question.name, plan.records, bare_s, gateway_s))
            finally:
                channel.close()
    return rows


def _bare_statement(question: Question, catalogue: Catalogue, profile: str) -> Executable:
    """The hand-written GROUP BY; for a link, the store's own statement for the cells (a plain
    correlated EXISTS would scan the other table once per row where the profile has no index)."""
    if question.bare_sql is not None:
        return text(question.bare_sql).bindparams(first=MONTHS[0], last=MONTHS[1])
    spec = validate_request(question.request, catalogue)
    return compile_aggregate(spec, build_schema(catalogue, profile).datasets).cells


def _bare_call(conn: Connection, statement: Executable) -> Callable[[], object]:
    return lambda: conn.execute(statement).all()


def _gateway_call(stub: query_pb2_grpc.QueryStub, question: Question) -> Callable[[], object]:
    def call() -> object:
        reply = stub.Aggregate(question.request, timeout=600)
        if len(reply.cells) != question.cells:  # a refusal raises; a wrong shape is a bug
            raise RuntimeError(f"{question.name}: {len(reply.cells)} cells, not {question.cells}")
        return reply

    return call


def _row(  # noqa: PLR0917 - one figure each, named at the call
    backend: str, profile: str, question: str, records: int, bare_s: list[float], gateway_s: list[float]
) -> QueryRow:
    bare, gateway = statistics.median(bare_s), statistics.median(gateway_s)
    ratio = gateway / bare
    return QueryRow(
        backend, profile, question, records, bare, gateway, ratio, ratio <= TARGET_RATIO, bare_s, gateway_s
    )


def run_query(
    records: int, backends: list[str], profiles: list[str], repeat: int, *, pg_url: str = PG_URL
) -> dict[str, object]:
    catalogue = shipped_catalogue()
    rows: list[QueryRow] = []
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
        plan = _Plan(records, profiles, repeat, Path(tmp), catalogue)
        for backend in backends:
            if backend == "sqlite":
                rows.extend(_measure_backend(plan, backend, f"sqlite:///{plan.root / 'store.db'}"))
            else:
                with fresh_postgres_schema(pg_url, prefix="bench_query") as url:
                    rows.extend(_measure_backend(plan, backend, url))
    return {
        "records": records,
        "repeat": repeat,
        "target_ratio": TARGET_RATIO,
        "rows": [asdict(r) for r in rows],
        "meets_target": all(r.meets_target for r in rows if r.question == "2dim"),
    }


def format_query(result: dict[str, object]) -> str:
    header = (
        f"{'backend':<9} {'indexes':<8} {'question':<8} {'records':>8} {'bare p50 s':>10} "
        f"{'gateway p50 s':>13} {'ratio':>6}"
    )
    lines = [header, "-" * len(header)]
    rows = result["rows"]
    assert isinstance(rows, list)
    for row in rows:
        lines.append(
            f"{row['backend']:<9} {row['indexes']:<8} {row['question']:<8} {row['records']:>8} "
            f"{row['bare_p50_s']:>10.3f} {row['gateway_p50_s']:>13.3f} {row['ratio_p50']:>6.2f}"
        )
    verdict = "meets" if result["meets_target"] else "misses"
    lines.append(
        f"(p50 of {result['repeat']} alternated runs after a warm-up; the two-dimension query {verdict} "
        f"the target ratio <= {result['target_ratio']}; see bench/_query.py)"
    )
    return "\n".join(lines)


def print_query(result: dict[str, object], *, as_json: bool) -> None:
    print(json.dumps(result, indent=2) if as_json else format_query(result))
