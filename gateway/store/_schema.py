"""The database schema, built from the catalogue: one typed table per dataset, the batch register
and the audit log. Plain SQLAlchemy Core, identical on SQLite and PostgreSQL.

Indexes follow the aggregations agreements allow (DESIGN §12: COUNT(DISTINCT subject) dominates,
so every grouping index holds ``subject`` and the engine counts from the index alone; measures
ride at the end so sums and means are covered too):

- ``(event_month, subject, <measures>)``: time-only groupings (month, quarter, year), month
  ranges;
- ``(<dimension>, event_month, subject, <measures>)`` for each dimension: a grouping or filter
  led by that dimension, with or without time;
- ``(subject, event_day)``: the probe side of a link (``EXISTS`` on the other dataset).

Index upkeep is most of the cost of an insert (inserts are ~10x faster on SQLite and ~4x on
PostgreSQL without them), so add one only for a grouping an agreement actually allows.

There is no index on ``batch_id``: batches are never deleted, so the foreign key is only
checked on insert (a primary-key lookup in ``batches``), and every index costs ingest speed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
)

from gateway.catalogue import Catalogue, Dataset
from gateway.errors import ConfigError

SUBJECT_BYTES = 32
BATCH_ID_MAX = 128
NAME_MAX = 64
DIMENSION_MIN_WIDTH = 64
_IDENTIFIER_MAX = 63  # PostgreSQL silently truncates longer identifiers; refuse them instead
_FIXED_COLUMNS = ("batch_id", "subject", "event_day", "event_month")


@dataclass(frozen=True)
class DatasetTable:
    dataset: Dataset
    table: Table

    @property
    def dimension_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dataset.dimensions)

    @property
    def measure_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.dataset.measures)


@dataclass(frozen=True)
class Schema:
    metadata: MetaData
    batches: Table
    audit_log: Table
    datasets: Mapping[str, DatasetTable]


def table_name(dataset: str) -> str:
    return f"ds_{dataset}"


def build_schema(catalogue: Catalogue) -> Schema:
    """The tables and indexes for every dataset of the catalogue; ConfigError names a misfit."""
    metadata = MetaData()
    batches = Table(
        "batches",
        metadata,
        Column("batch_id", String(BATCH_ID_MAX), primary_key=True),
        Column("agency", String(NAME_MAX), nullable=False),
        Column("dataset", String(NAME_MAX), nullable=False),
        Column("contract_version", Integer, nullable=False),
        Column("record_count", Integer, nullable=False),
        Column("content_digest", String(64), nullable=False),
        Column("received_at", String(40), nullable=False),
    )
    audit_log = _audit_table(metadata)
    datasets = {
        name: DatasetTable(ds, _dataset_table(metadata, ds)) for name, ds in catalogue.datasets.items()
    }
    return Schema(metadata=metadata, batches=batches, audit_log=audit_log, datasets=datasets)


def _audit_table(metadata: MetaData) -> Table:
    # seq is assigned by the appender (last seq + 1, under the chain lock) because the hash
    # covers it; nothing is left to a database sequence that could skip or reuse a number.
    table = Table(
        "audit_log",
        metadata,
        Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
        Column("decision_id", String, nullable=False),
        Column("timestamp", String, nullable=False),
        Column("path", String, nullable=False),
        Column("principal", String, nullable=False),
        Column("agency", String, nullable=False),
        Column("action", String, nullable=False),
        Column("outcome", String, nullable=False),
        Column("reasons", Text, nullable=False),  # JSON list
        Column("agreement_id", String, nullable=False),
        Column("purpose", String, nullable=False),
        Column("policy_revision", String, nullable=False),
        Column("query_fingerprint", String, nullable=False),
        Column("cells_released", BigInteger, nullable=False),
        Column("cells_withheld", BigInteger, nullable=False),
        Column("latency_ms", Double, nullable=False),
        Column("input", Text, nullable=False),  # canonical JSON object
        Column("result", Text, nullable=False),  # canonical JSON object
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
    )
    Index("ix_audit_log_decision_id", table.c.decision_id)
    Index("ix_audit_log_timestamp", table.c.timestamp)
    Index("ix_audit_log_agreement_id", table.c.agreement_id)
    return table


def _dataset_table(metadata: MetaData, dataset: Dataset) -> Table:
    name = table_name(dataset.name)
    where = f"data.catalogue.datasets.{dataset.name}"
    if len(name) > _IDENTIFIER_MAX:
        raise ConfigError(f"{where}: dataset name is too long for a table name")
    taken = set(_FIXED_COLUMNS)
    for column in [d.name for d in dataset.dimensions] + [m.name for m in dataset.measures]:
        if column in taken:
            raise ConfigError(f"{where}.{column}: column name is used twice or reserved")
        taken.add(column)
    subject = Column("subject", LargeBinary(SUBJECT_BYTES), nullable=False)
    dimension_columns = [
        Column(d.name, String(max(DIMENSION_MIN_WIDTH, *(len(v) for v in d.domain))), nullable=False)
        for d in dataset.dimensions
    ]
    measure_columns = [Column(m.name, Double, nullable=False) for m in dataset.measures]
    table = Table(
        name,
        metadata,
        Column("batch_id", String(BATCH_ID_MAX), ForeignKey("batches.batch_id"), nullable=False),
        subject,
        Column("event_day", Integer, nullable=False),
        Column("event_month", String(7), nullable=False),
        *dimension_columns,
        *measure_columns,
        # SQLite ignores VARCHAR lengths; these make both backends refuse the same rows.
        CheckConstraint(func.length(subject) == SUBJECT_BYTES, name=_ident(f"ck_{name}_subject_len")),
        *(
            CheckConstraint(func.length(c) <= c.type.length, name=_ident(f"ck_{name}_{c.name}_len"))
            for c in dimension_columns
            if isinstance(c.type, String) and c.type.length is not None
        ),
    )
    c = table.c
    measures = [c[m.name] for m in dataset.measures]
    Index(_ident(f"ix_{name}_month_subject"), c.event_month, c.subject, *measures)
    for d in dataset.dimensions:
        Index(_ident(f"ix_{name}_{d.name}_month_subject"), c[d.name], c.event_month, c.subject, *measures)
    Index(_ident(f"ix_{name}_subject_day"), c.subject, c.event_day)
    return table


def _ident(full: str) -> str:
    """A constraint or index name within PostgreSQL's 63 characters, stable across runs."""
    if len(full) <= _IDENTIFIER_MAX:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:10]
    return f"{full[: _IDENTIFIER_MAX - 11]}_{digest}"
