"""A real gateway on loopback with mutual TLS, a fresh development PKI, and a store on SQLite
or PostgreSQL; plus a test-side sealer that builds batches exactly as an agent would."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import sqlalchemy
import sqlalchemy.pool
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from agents._pb import ingest_pb2, ingest_pb2_grpc, query_pb2, query_pb2_grpc
from agents._seal import hpke_info, signed_message
from gateway._pb import audit_pb2_grpc
from gateway._settings import ClientProfile, GatewaySettings
from gateway._tls import client_channel
from gateway.pki import PkiLayout, init_dev_pki
from gateway.policy._locate import shipped_bundle_dir
from gateway.server import Gateway, build_gateway
from gateway.store.testing import fresh_postgres_schema

PG_URL = os.environ.get("DATASHARE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
EPOCH = dt.date(1970, 1, 1)


def day(iso: str) -> int:
    return (dt.date.fromisoformat(iso) - EPOCH).days


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    return init_dev_pki(tmp_path_factory.mktemp("pki"), listen="127.0.0.1:0")


@dataclass
class Running:
    gateway: Gateway
    layout: PkiLayout
    store_url: str

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gateway.port}"

    def channel(self, name: str) -> grpc.Channel:
        """A channel authenticated as a client profile ('health-analyst', ...) or an agent ('agent:health')."""
        profile = ClientProfile.from_file(self.layout.client_profile("health-analyst"))
        if name.startswith("agent:"):
            agency = name.split(":", 1)[1]
            profile = dataclasses.replace(
                profile, cert=self.layout.agent_cert(agency), key=self.layout.agent_key(agency)
            )
        else:
            profile = ClientProfile.from_file(self.layout.client_profile(name))
        return client_channel(dataclasses.replace(profile, address=self.address))

    def ingest(self, name: str) -> ingest_pb2_grpc.IngestStub:
        return ingest_pb2_grpc.IngestStub(self.channel(name))

    def query(self, name: str) -> query_pb2_grpc.QueryStub:
        return query_pb2_grpc.QueryStub(self.channel(name))

    def audit(self, name: str = "auditor") -> audit_pb2_grpc.AuditStub:
        return audit_pb2_grpc.AuditStub(self.channel(name))

    def sql(self, *statements: str) -> None:
        """Act on the database behind the gateway's back (tampering, failure injection)."""
        engine = sqlalchemy.create_engine(self.store_url, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.begin() as conn:
                for statement in statements:
                    conn.execute(sqlalchemy.text(statement))
        finally:
            engine.dispose()

    @property
    def backend(self) -> str:
        return self.store_url.split(":", 1)[0].split("+", 1)[0]

    def stored_rows(self, dataset: str) -> int:
        """The test's own oracle: rows in the dataset table, read straight from the database."""
        engine = sqlalchemy.create_engine(self.store_url, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as conn:
                return int(conn.execute(sqlalchemy.text(f"SELECT COUNT(*) FROM ds_{dataset}")).scalar_one())
        finally:
            engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def running(request: pytest.FixtureRequest, pki: PkiLayout, tmp_path: Path) -> Iterator[Running]:
    settings = GatewaySettings.from_file(pki.gateway_config)
    if request.param == "sqlite":
        with _Serve(settings, f"sqlite:///{tmp_path / 'gateway.db'}", pki) as r:
            yield r
    else:
        with fresh_postgres_schema(PG_URL, prefix="e2e") as url, _Serve(settings, url, pki) as r:
            yield r


def serve_with_terms(backend: str, pki: PkiLayout, tmp_path: Path, terms: str) -> Iterator[Running]:
    """A gateway serving a copy of the shipped bundle whose agreement gets ``terms`` (YAML lines,
    indented as the agreement's own) after its cell cap, on ``backend`` ("sqlite" or "postgres")."""
    bundle = tmp_path / "bundle"
    shutil.copytree(shipped_bundle_dir(), bundle)
    agreements = bundle / "agreements" / "data.yaml"
    text = agreements.read_text()
    assert "  max_cells: 2000\n" in text
    agreements.write_text(text.replace("  max_cells: 2000\n", "  max_cells: 2000\n" + terms, 1))
    settings = GatewaySettings.from_file(pki.gateway_config)
    settings = dataclasses.replace(
        settings, policy=dataclasses.replace(settings.policy, bundle=bundle, reload_interval_s=0)
    )
    if backend == "sqlite":
        with _Serve(settings, f"sqlite:///{tmp_path / 'gateway.db'}", pki) as running:
            yield running
    else:
        with fresh_postgres_schema(PG_URL, prefix="e2e") as url, _Serve(settings, url, pki) as running:
            yield running


class _Serve:
    def __init__(self, settings: GatewaySettings, url: str, layout: PkiLayout) -> None:
        store = dataclasses.replace(settings.store, url=url)
        self.settings = dataclasses.replace(settings, listen="127.0.0.1:0", store=store)
        self.layout, self.url = layout, url

    def __enter__(self) -> Running:
        self.gateway = build_gateway(self.settings)
        self.gateway.start()
        return Running(self.gateway, self.layout, self.url)

    def __exit__(self, *exc: object) -> None:
        self.gateway.stop(grace=0.5)


def budgeted_bundle(tmp_path: Path, queries: int, period: str = "month") -> Path:
    """A copy of the shipped bundle whose agreements allow ``queries`` queries a ``period``."""
    from gateway.policy._locate import shipped_bundle_dir

    bundle = tmp_path / "bundle"
    shutil.copytree(shipped_bundle_dir(), bundle)
    agreements = bundle / "agreements" / "data.yaml"
    text = agreements.read_text()
    assert "\n  k: 10\n" in text
    budget = f"\n  k: 10\n  query_budget: {{queries: {queries}, period: {period}}}\n"
    agreements.write_text(text.replace("\n  k: 10\n", budget))
    return bundle


@dataclass(frozen=True)
class Row:
    person: str
    event_day: int
    dims: dict[str, str]
    measures: dict[str, float] = dataclasses.field(default_factory=dict)


def token(person: str) -> bytes:
    """Stands in for T0 = HMAC(K_link, id): any 32 bytes the gateway will re-key."""
    return hashlib.sha256(b"test-person\0" + person.encode()).digest()


def seal(
    layout: PkiLayout,
    agency: str,
    dataset: str,
    rows: Sequence[Row],
    *,
    version: int = 1,
    batch_id: str = "",
    dimension_order: Sequence[str] = (),
    measure_names: Sequence[str] = (),
) -> ingest_pb2.SealedBatch:
    """Seal and sign a batch with the dev PKI's real keys, byte for byte as agents/_seal.py does."""
    batch = ingest_pb2.RecordBatch(
        subject_tokens=[token(r.person) for r in rows], event_days=[r.event_day for r in rows]
    )
    for name in dimension_order or sorted(rows[0].dims):
        values = [r.dims[name] for r in rows]
        dictionary = sorted(set(values))
        batch.dimensions.add(name=name, dictionary=dictionary, codes=[dictionary.index(v) for v in values])
    for name in measure_names or sorted(rows[0].measures):
        batch.measures.add(name=name, values=[r.measures[name] for r in rows])
    plaintext = batch.SerializeToString(deterministic=True)
    header = ingest_pb2.BatchHeader(
        agency=agency,
        dataset=dataset,
        contract_version=version,
        batch_id=batch_id or hashlib.sha256(plaintext).hexdigest()[:32],
        record_count=len(rows),
        signing_key_id=layout.signing_key_id(agency),
        sealed_at="2026-11-22T00:00:00Z",
    ).SerializeToString(deterministic=True)
    gateway_pub = serialization.load_pem_public_key(layout.hpke_pub.read_bytes())
    ciphertext = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM).encrypt(
        plaintext,
        gateway_pub,
        info=hpke_info(header),  # type: ignore[arg-type]
    )
    signing_key = serialization.load_pem_private_key(layout.signing_key(agency).read_bytes(), password=None)
    signature = signing_key.sign(signed_message(header, ciphertext))  # type: ignore[union-attr, call-arg]
    return ingest_pb2.SealedBatch(header=header, ciphertext=ciphertext, signature=signature)


def ed_rows(
    district: str, people: int, visits_each: int = 1, month: str = "2025-03", prefix: str = ""
) -> list[Row]:
    """ED visits: ``people`` distinct people in one district and month, ``visits_each`` visits each."""
    return [
        Row(
            f"{prefix}{district}-{p}",
            day(f"{month}-{1 + v:02d}"),
            {"district": district, "age_band": "25-34", "sex": "F", "presentation": "overdose"},
            {"length_of_stay_hours": 4.0},
        )
        for p in range(people)
        for v in range(visits_each)
    ]


def subjects_query(**fields: object) -> query_pb2.AggregateRequest:
    """A count of distinct people in ED visits under the demo agreement; fields override."""
    request = query_pb2.AggregateRequest(
        agreement_id="ag-2026-001",
        purpose="overdose-prevention",
        dataset="ed_visits",
        measures=[query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUBJECTS)],
    )
    for name, value in fields.items():
        field = getattr(request, name)
        if isinstance(value, list):
            field.extend(value)
        else:
            setattr(request, name, value)
    return request
