"""Store fixtures: every store test runs on SQLite (a file in tmp_path) and on PostgreSQL (a fresh
schema per test, dropped after). Deselect the PostgreSQL half with ``-m "not postgres"``."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gateway.catalogue import Catalogue
from gateway.store import INDEX_PROFILES, BatchMeta, RecordColumns, SqlStore, open_store
from gateway.store.testing import fresh_postgres_schema

POSTGRES_URL = os.environ.get(
    "DATASHARE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

DISTRICTS = ("D01", "D02", "D03", "D04")
AGE_BANDS = ("0-17", "18-34", "35-64", "65+")
SEXES = ("F", "M", "X")
PRESENTATIONS = ("overdose", "injury", "other")
INCIDENT_TYPES = ("assault", "welfare_check", "other")

CATALOGUE_DATA: Mapping[str, Any] = {
    "agencies": {"metro-police": {}, "health": {}},
    "catalogue": {
        "datasets": {
            "visits": {
                "owner": "health",
                "version": 1,
                "dimensions": {
                    "district": {"domain": list(DISTRICTS)},
                    "age_band": {"domain": list(AGE_BANDS)},
                    "sex": {"domain": list(SEXES)},
                    "presentation": {"domain": list(PRESENTATIONS)},
                },
                "measures": {"stay_hours": {"min": 0, "max": 72}},
            },
            "contacts": {
                "owner": "metro-police",
                "version": 1,
                "dimensions": {
                    "district": {"domain": list(DISTRICTS)},
                    "incident_type": {"domain": list(INCIDENT_TYPES)},
                },
            },
        }
    },
}


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return Catalogue.from_data(CATALOGUE_DATA)


@pytest.fixture(scope="session")
def postgres_base_url() -> str:
    """The test server's URL (DATASHARE_TEST_POSTGRES_URL overrides the default)."""
    return POSTGRES_URL


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database of either backend; PostgreSQL gets a schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
        return
    with fresh_postgres_schema(POSTGRES_URL, prefix="store_test") as url:
        yield url


@pytest.fixture
def store(store_url: str, catalogue: Catalogue) -> Iterator[SqlStore]:
    opened = open_store(store_url, catalogue)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(params=INDEX_PROFILES)
def indexed(request: pytest.FixtureRequest, store_url: str, catalogue: Catalogue) -> Iterator[SqlStore]:
    """The store, once per index profile: what a test asks must not depend on the indexes."""
    opened = open_store(store_url, catalogue, indexes=request.param)
    try:
        yield opened
    finally:
        opened.close()


Row = Mapping[str, Any]
"""A test record: subject (a name, turned into a 32-byte token), event_day, every dimension and
measure of its dataset by name."""


class Batches:
    """Builds batches from test records; a fixture, so test modules need not import conftest."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue

    @staticmethod
    def token(subject: str) -> bytes:
        return hashlib.sha256(subject.encode()).digest()

    def columns(self, dataset: str, rows: Sequence[Row]) -> RecordColumns:
        contract = self.catalogue.datasets[dataset]
        return RecordColumns(
            subjects=[self.token(r["subject"]) for r in rows],
            event_days=[r["event_day"] for r in rows],
            dimensions={d.name: [r[d.name] for r in rows] for d in contract.dimensions},
            measures={m.name: [r[m.name] for r in rows] for m in contract.measures},
        )

    def meta(self, dataset: str, batch_id: str, count: int, content: str = "") -> BatchMeta:
        owner = self.catalogue.datasets[dataset].owner
        digest = hashlib.sha256(f"{batch_id}|{content}".encode()).hexdigest()
        return BatchMeta(batch_id, owner, dataset, 1, count, digest)

    def store(self, store: SqlStore, dataset: str, batch_id: str, rows: Sequence[Row]) -> None:
        """Store ``rows`` as a new batch; fail the test if the store says it was seen before."""
        outcome = store.store_batch(self.meta(dataset, batch_id, len(rows)), self.columns(dataset, rows))
        assert outcome.stored


@pytest.fixture(scope="session")
def batches(catalogue: Catalogue) -> Batches:
    return Batches(catalogue)


@pytest.fixture
def sql(store_url: str) -> Iterator[Callable[..., list[Any]]]:
    """Run raw SQL against the store's database from outside the store (to count or tamper)."""
    engine = create_engine(store_url, poolclass=NullPool)

    def _run(statement: str, **params: Any) -> list[Any]:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return list(result.all()) if result.returns_rows else []

    try:
        yield _run
    finally:
        engine.dispose()
