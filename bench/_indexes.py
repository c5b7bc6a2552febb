"""``indexes``: what each store index profile costs at ingest and saves at query time.

Per backend and profile, into a fresh database through the real store (``SqlStore.store_batch``,
batches of 1,000, the shipped catalogue's ``ed_visits``): records/s of the store step alone
(building the synthetic columns is not timed), then the best of three runs of

- ``2dim``: COUNT(DISTINCT subject), COUNT(*) and SUM(length_of_stay_hours) by district and month
  over every row;
- ``link``: subjects with an overdose visit and a drugs, welfare-check or disturbance police
  contact 0-30 days before, by district and year (``police_incidents`` holds a third as many rows,
  loaded untimed).

Synthetic rows like the demo export's: ~2.9 records a person (random 32-byte subjects), event days
spread over three years in no particular order (exports come person by person), dimension values
uniform over their domains.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from gateway.catalogue import Catalogue
from gateway.policy._bundle import load_bundle
from gateway.policy._locate import shipped_bundle_dir
from gateway.query import LinkSpec, MeasureRef, QuerySpec
from gateway.store import BatchMeta, RecordColumns, SqlStore, open_store
from gateway.store.testing import fresh_postgres_schema

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BATCH = 1000
RECORDS_PER_PERSON = 2.9
FIRST_DAY = 19_723  # 2024-01-01
DAYS = 3 * 365
QUERY_RUNS = 3
TWO_DIM = QuerySpec(
    "ed_visits",
    (MeasureRef("subjects"), MeasureRef("records"), MeasureRef("sum", "length_of_stay_hours")),
    ("district", "month"),
)
LINK = QuerySpec(
    "ed_visits",
    (MeasureRef("subjects"), MeasureRef("records")),
    ("district", "year"),
    filters=(("presentation", ("overdose",)),),
    link=LinkSpec("police_incidents", 30, 0, (("incident_type", ("disturbance", "drugs", "welfare_check")),)),
)


@dataclass(frozen=True)
class ProfileRow:
    backend: str
    indexes: str
    records: int
    ingest_records_per_s: float
    two_dim_query_s: float
    link_query_s: float


def shipped_catalogue() -> Catalogue:
    return Catalogue.from_data(load_bundle(shipped_bundle_dir()).data)


def _batches(
    catalogue: Catalogue, dataset: str, count: int, people: list[bytes], seed: int
) -> Iterator[RecordColumns]:
    rng = random.Random(seed)
    contract = catalogue.datasets[dataset]
    for start in range(0, count, BATCH):
        n = min(BATCH, count - start)
        yield RecordColumns(
            subjects=[rng.choice(people) for _ in range(n)],
            event_days=[FIRST_DAY + rng.randrange(DAYS) for _ in range(n)],
            dimensions={d.name: [rng.choice(d.domain) for _ in range(n)] for d in contract.dimensions},
            measures={m.name: [rng.uniform(m.min, m.max) for _ in range(n)] for m in contract.measures},
        )


def _load(store: SqlStore, catalogue: Catalogue, dataset: str, count: int, people: list[bytes]) -> float:
    """Seconds spent in store_batch for ``count`` records of ``dataset``."""
    owner = catalogue.datasets[dataset].owner
    spent = 0.0
    for number, columns in enumerate(_batches(catalogue, dataset, count, people, seed=count)):
        batch_id = f"{dataset}-{number}"
        meta = BatchMeta(
            batch_id, owner, dataset, 1, len(columns.subjects), hashlib.sha256(batch_id.encode()).hexdigest()
        )
        started = time.perf_counter()
        store.store_batch(meta, columns)
        spent += time.perf_counter() - started
    return spent


def _best_of(store: SqlStore, spec: QuerySpec) -> float:
    best = float("inf")
    for _ in range(QUERY_RUNS):
        started = time.perf_counter()
        store.aggregate(spec)
        best = min(best, time.perf_counter() - started)
    return best


def _measure(url: str, backend: str, profile: str, records: int, catalogue: Catalogue) -> ProfileRow:
    people = [os.urandom(32) for _ in range(max(100, round(records / RECORDS_PER_PERSON)))]
    store = open_store(url, catalogue, indexes=profile)
    try:
        ingest_s = _load(store, catalogue, "ed_visits", records, people)
        _load(store, catalogue, "police_incidents", max(1, records // 3), people)
        if backend == "postgres":
            _analyze(url)  # fresh planner statistics, as autovacuum would gather
        return ProfileRow(
            backend, profile, records, records / ingest_s, _best_of(store, TWO_DIM), _best_of(store, LINK)
        )
    finally:
        store.close()


def _analyze(url: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()


def run_indexes(
    records: int, backends: list[str], profiles: list[str], *, pg_url: str = PG_URL
) -> dict[str, object]:
    catalogue = shipped_catalogue()
    rows = []
    for backend in backends:
        for profile in profiles:
            if backend == "sqlite":
                with tempfile.TemporaryDirectory(prefix="bench-indexes-") as tmp:
                    rows.append(
                        _measure(f"sqlite:///{Path(tmp) / 'store.db'}", backend, profile, records, catalogue)
                    )
            else:
                with fresh_postgres_schema(pg_url, prefix="bench_idx") as url:
                    rows.append(_measure(url, backend, profile, records, catalogue))
    return {"records": records, "batch_size": BATCH, "rows": [asdict(r) for r in rows]}


def format_indexes(result: dict[str, object]) -> str:
    header = f"{'backend':<9} {'indexes':<8} {'records':>8} {'ingest rec/s':>12} {'2dim s':>7} {'link s':>7}"
    lines = [header, "-" * len(header)]
    rows = result["rows"]
    assert isinstance(rows, list)
    for row in rows:
        lines.append(
            f"{row['backend']:<9} {row['indexes']:<8} {row['records']:>8} "
            f"{row['ingest_records_per_s']:>12,.0f} {row['two_dim_query_s']:>7.3f} "
            f"{row['link_query_s']:>7.3f}"
        )
    lines.append(
        "(ingest: SqlStore.store_batch alone, batches of 1000; queries: best of 3; see bench/_indexes.py)"
    )
    return "\n".join(lines)


def print_indexes(result: dict[str, object], *, as_json: bool) -> None:
    print(json.dumps(result, indent=2) if as_json else format_indexes(result))
