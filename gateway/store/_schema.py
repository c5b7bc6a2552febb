"""The database schema, built from the catalogue: one typed table per dataset, the batch register
and the audit log. Plain SQLAlchemy Core, identical on SQLite and PostgreSQL.

Dataset-table indexes come in two profiles, chosen by ``[store] indexes`` in gateway.toml:

- ``ingest`` (the default): no secondary index at all. Every insert appends to the table and
  touches nothing else. A link (``EXISTS`` on the other dataset) then cannot probe an index, so
  the query compiler (``_aggregate``) materialises the filtered other side once and SQLite builds
  an automatic index on it for the query; PostgreSQL plans a hash semi-join either way.
- ``query``: covering indexes for the groupings agreements allow (COUNT(DISTINCT subject) can
  count from the index; measures ride at the end so sums are covered too):
  ``(event_month, subject, <measures>)`` for time-only groupings and month ranges;
  ``(<dimension>, event_month, subject, <measures>)`` per dimension; and ``(subject, event_day)``
  for the probe side of a link.

Why the lean one is the default, measured with ``python bench/run.py indexes --records 1000000``
(2 cores; store step alone, batches of 1,000; query = COUNT(DISTINCT subject), COUNT(*) and
SUM(length_of_stay_hours) by district and month over 1M ``ed_visits`` rows; link = overdose
visits with a police contact 0-30 days before, against 333k ``police_incidents`` rows):

    backend     profile  ingest rec/s   2-dim query   link query
    SQLite      ingest   412,608       2.45 s        0.74 s
    SQLite      query      8,632       1.13 s        0.55 s
    PostgreSQL  ingest   162,209       0.98 s        0.23 s
    PostgreSQL  query     24,754       1.02 s        0.23 s

The subject is a random 32-byte token, so each covering index puts every insert on a random
B-tree page; even the one link index alone, ``(subject, event_day)``, cut SQLite to ~20k rec/s
(PostgreSQL ~53k) while the link query ran 1.3 s vs 1.0 s (PostgreSQL 0.32 s vs 0.33 s). An
``(event_day)`` index is not append-friendly either (exports come person by person, so days
arrive in no order): SQLite ~37k rec/s, and no query here filters on days. The covering set
halves SQLite's two-dimension query (2.4 s to 1.1 s) at a 48th of the ingest rate, and buys
nothing on PostgreSQL: these queries read most of the table, and COUNT(DISTINCT) still sorts.
Choose ``query`` only for a database that is loaded once and queried hard.

Switching profiles on an existing database: ``create_schema`` (every start) creates the
profile's missing indexes and drops the other profile's, so the database always matches the
configuration, both ways. Only index names the profiles define are ever dropped; an index a DBA
added by hand stays. Every replica on one database must use the same profile, or they undo each
other's indexes at start-up. Creating the covering set on a big table takes a while and holds the
schema lock meanwhile.

There is no index on ``batch_id``: batches are never deleted, so the foreign key is only
checked on insert (a primary-key lookup in ``batches``), and every index costs ingest speed.

On PostgreSQL the dataset tables carry no foreign key to ``batches`` at all: PostgreSQL checks
one with a trigger that runs a locking lookup per inserted row, which cost its server 3.5-4 µs a
record (measured on 1,000-row binary COPYs: 6.7 µs with it, 2.7 without), more than the whole
rest of the insert, on the two cores the agent and the gateway share. The reference holds by
construction instead: the only writer (``store_batch``) registers the batch and COPYs its rows,
every one stamped with that batch id, in one transaction; rows are never deleted or updated.
SQLite keeps the key (an in-process B-tree probe, cheap there; dropping it would mean rebuilding
each table). Migration 0003 drops it from PostgreSQL stores made before.
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ColumnElement,
    Connection,
    Double,
    ForeignKey,
    FromClause,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    inspect,
)

from gateway.catalogue import Catalogue, Dataset
from gateway.errors import ConfigError

SUBJECT_BYTES = 32
BATCH_ID_MAX = 128
NAME_MAX = 64
DIMENSION_MIN_WIDTH = 64
_IDENTIFIER_MAX = 63  # PostgreSQL silently truncates longer identifiers; refuse them instead
_FIXED_COLUMNS = ("batch_id", "subject", "subject_h", "subject_n", "event_day", "event_month")
# subject_h: the first bytes of the (re-keyed) subject as a number, so SQL can digest the set of
# people in a cell order-independently (SUM(DISTINCT subject_h)) to key the noise of an agreement
# with `noise` (DESIGN §9.6). Four bytes: a sum of up to 2^31 of them fits in a BIGINT, where
# SQLite's SUM raises on overflow. Nullable: tables made before it hold NULL in old rows.
SUBJECT_H_BYTES = 4
# subject_n: the first eight bytes of the subject as a signed BIGINT, the number the store counts
# people by. Counting distinct 8-byte numbers costs well under what 32-byte subjects cost (1M rows
# on PostgreSQL: 0.26 s against 0.44 s, the total beside every grid). It counts people exactly
# only while no two subjects of a dataset share a number; the store checks that before it trusts
# a count (gateway/store/_subject_numbers.py). Nullable: tables made before it hold NULL in old
# rows until migration 0006 fills them.
SUBJECT_N_BYTES = 8


def subject_h(subject: bytes) -> int:
    """The noise-key digest column of one stored subject."""
    return int.from_bytes(subject[:SUBJECT_H_BYTES], "big")


def subject_n(subject: bytes) -> int:
    """The number the store counts one stored subject's person by."""
    return int.from_bytes(subject[:SUBJECT_N_BYTES], "big", signed=True)


# array types of exactly 4 (unsigned) and 8 (signed) bytes per item, where the platform has them
_WORD = next((code for code in "IL" if array(code).itemsize == SUBJECT_H_BYTES), None)
_LONG = next((code for code in "lq" if array(code).itemsize == SUBJECT_N_BYTES), None)


def subject_hs(subjects: Sequence[bytes], width: int) -> list[int]:
    """subject_h of each subject, all ``width`` bytes long (the caller has checked): read as
    big-endian words of one joined buffer, in C; a Python call per subject cost ~0.25 µs of the
    gateway's ~4 µs a record (issue 7)."""
    return _leading(subjects, width, _WORD, SUBJECT_H_BYTES) or list(map(subject_h, subjects))


def subject_ns(subjects: Sequence[bytes], width: int) -> list[int]:
    """subject_n of each subject, all ``width`` bytes long, as ``subject_hs`` reads them."""
    return _leading(subjects, width, _LONG, SUBJECT_N_BYTES) or list(map(subject_n, subjects))


def _leading(subjects: Sequence[bytes], width: int, code: str | None, size: int) -> list[int] | None:
    """The first ``size`` bytes of each subject as a big-endian number of array type ``code``;
    None where the platform has no such type or ``size`` does not divide ``width``."""
    if code is None or width % size or not subjects:
        return None
    words = array(code, b"".join(subjects))
    if sys.byteorder == "little":
        words.byteswap()
    return words[:: width // size].tolist()


IndexProfile = Literal["ingest", "query"]
INDEX_PROFILES: tuple[IndexProfile, ...] = ("ingest", "query")
DEFAULT_INDEX_PROFILE: IndexProfile = "ingest"


@dataclass(frozen=True)
class DatasetTable:
    dataset: Dataset
    table: Table  # with the chosen profile's indexes attached
    # every index name any profile gives this table: the ones create_schema may create or drop
    managed_indexes: frozenset[str] = frozenset()
    # True only on a copy the store makes for its own statements (SqlStore._ledger_tables), once
    # it has found no stored row with a dimension value outside the current domains: a condition
    # holding a dimension to its whole domain then holds on every row and is left out
    rows_in_domain: bool = False
    # True only on such a copy too, once the store has seen the rows the statements read (by an
    # answer's watermark) hold one subject per subject_n: people are then counted by number
    count_by_number: bool = False

    def person(self, rows: FromClause) -> ColumnElement[Any]:
        """The column of ``rows`` (this table's, or a derived table of them) people are counted
        and grouped by: the subject, or its number on a copy marked ``count_by_number``."""
        return rows.c.subject_n if self.count_by_number else rows.c.subject

    @property
    def subject_indexed(self) -> bool:
        """Whether an index leads with ``subject``, so a link can probe it row by row."""
        return any(next(iter(ix.columns)).name == "subject" for ix in self.table.indexes)

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
    checkpoints: Table  # the audit log's signed checkpoints
    datasets: Mapping[str, DatasetTable]
    index_profile: IndexProfile = "ingest"


def table_name(dataset: str) -> str:
    return f"ds_{dataset}"


def build_schema(
    catalogue: Catalogue, indexes: str = DEFAULT_INDEX_PROFILE, backend: str = "sqlite"
) -> Schema:
    """The tables, and the ``indexes`` profile's indexes, for every dataset of the catalogue, as
    ``backend`` (``sqlite`` or ``postgresql``) holds them; ConfigError names a misfit (an unknown
    profile is ``store.indexes``)."""
    if indexes not in INDEX_PROFILES:
        raise ConfigError(f"store.indexes: must be one of {', '.join(INDEX_PROFILES)}")
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
    # every batch commit reads the newest stamp under the batch lock, and every aggregate the
    # newest its snapshot sees (gateway/store/_watermark.py): one seek each, however many batches
    Index("ix_batches_received_at", batches.c.received_at)
    audit_log = _audit_table(metadata)
    checkpoints = _checkpoint_table(metadata)
    _ledger_table(metadata)
    batch_fk = backend != "postgresql"
    datasets = {
        name: _dataset_table(metadata, ds, indexes, batch_fk=batch_fk)
        for name, ds in catalogue.datasets.items()
    }
    return Schema(
        metadata=metadata,
        batches=batches,
        audit_log=audit_log,
        datasets=datasets,
        index_profile=indexes,
        checkpoints=checkpoints,
    )


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
        # schema version 2 (gateway.audit._types.SCHEMA_VERSION); rows written before hold 1
        Column("schema_version", Integer, nullable=False, server_default="1"),
        Column("erased", Text, nullable=False, server_default="[]"),  # JSON list of pointers
        Column("masked", Text, nullable=False, server_default="[]"),  # JSON list of pointers
        Column("digests", Text, nullable=False, server_default="{}"),  # JSON object
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
    )
    Index("ix_audit_log_decision_id", table.c.decision_id)
    Index("ix_audit_log_timestamp", table.c.timestamp)
    Index("ix_audit_log_agreement_id", table.c.agreement_id)
    # Counting an agreement's allowed queries in a budget period (gateway.audit._budget) reads
    # only this index, under the chain lock, at every budgeted query.
    Index("ix_audit_log_budget", table.c.agreement_id, table.c.action, table.c.outcome, table.c.timestamp)
    return table


def _checkpoint_table(metadata: MetaData) -> Table:
    """Signed checkpoints of the audit log (gateway.audit._checkpoint): periodic ones, and the
    anchors prunes leave (a periodic and an anchor checkpoint may sign the same entry)."""
    return Table(
        "audit_checkpoints",
        metadata,
        Column("seq", BigInteger, primary_key=True, autoincrement=False),
        Column("kind", String(16), primary_key=True),
        Column("head_hash", String(64), nullable=False),
        Column("timestamp", String(40), nullable=False),
        Column("key_id", String(64), nullable=False),
        Column("signature", Text, nullable=False),
    )


LEDGER_TABLE = "release_ledger"


def _ledger_table(metadata: MetaData) -> Table:
    """One row per cell released under an agreement (DESIGN §9 item 6; gateway.store._ledger):
    read by (agreement, dataset) through the unique index, which also keeps a cell described
    exactly as an earlier one from being added twice."""
    table = Table(
        LEDGER_TABLE,
        metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("agreement_id", String(NAME_MAX), nullable=False),
        Column("dataset", String(NAME_MAX), nullable=False),
        Column("digest", String(64), nullable=False),  # SHA-256 of the canonical predicate
        Column("decision_id", String, nullable=False),  # the audit entry of the release
        Column("predicate", Text, nullable=False),  # canonical JSON (CellPredicate.canonical)
        Column("released", Text, nullable=False),  # JSON: measure label -> released value
        Column("released_at", String(40), nullable=False),
    )
    Index("ux_release_ledger_cell", table.c.agreement_id, table.c.dataset, table.c.digest, unique=True)
    return table


def _dataset_table(
    metadata: MetaData, dataset: Dataset, indexes: IndexProfile, *, batch_fk: bool
) -> DatasetTable:
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
    batch_ref = [ForeignKey("batches.batch_id")] if batch_fk else []
    table = Table(
        name,
        metadata,
        Column("batch_id", String(BATCH_ID_MAX), *batch_ref, nullable=False),
        subject,
        Column("subject_h", BigInteger, nullable=True),
        Column("subject_n", BigInteger, nullable=True),
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
    profiles = _index_columns(table, dataset)
    for index_name, columns in profiles[indexes]:
        Index(index_name, *columns)  # attaches itself to the table
    return DatasetTable(
        dataset,
        table,
        managed_indexes=frozenset(n for specs in profiles.values() for n, _ in specs),
    )


def _index_columns(table: Table, dataset: Dataset) -> dict[IndexProfile, list[tuple[str, list[Column[Any]]]]]:
    """Every profile's indexes for one dataset table, as (name, columns): see the module doc."""
    name, c = table.name, table.c
    measures = [c[m.name] for m in dataset.measures]
    query = [
        (_ident(f"ix_{name}_month_subject"), [c.event_month, c.subject, *measures]),
        *(
            (_ident(f"ix_{name}_{d.name}_month_subject"), [c[d.name], c.event_month, c.subject, *measures])
            for d in dataset.dimensions
        ),
        (_ident(f"ix_{name}_subject_day"), [c.subject, c.event_day]),
    ]
    return {"ingest": [], "query": query}


def reconcile_indexes(conn: Connection, schema: Schema) -> None:
    """Create the profile's missing indexes and drop the other profile's, table by table.

    Only names in ``managed_indexes`` are ever dropped, so an index a DBA added by hand stays."""
    inspector = inspect(conn)
    quote = conn.dialect.identifier_preparer.quote
    for target in schema.datasets.values():
        present = {ix["name"] for ix in inspector.get_indexes(target.table.name)}
        wanted = {ix.name for ix in target.table.indexes}
        for stale in sorted((target.managed_indexes - wanted) & present):
            conn.exec_driver_sql(f"DROP INDEX {quote(stale)}")
        for index in sorted(target.table.indexes, key=lambda ix: str(ix.name)):
            if index.name not in present:
                index.create(conn)


def _ident(full: str) -> str:
    """A constraint or index name within PostgreSQL's 63 characters, stable across runs."""
    if len(full) <= _IDENTIFIER_MAX:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:10]
    return f"{full[: _IDENTIFIER_MAX - 11]}_{digest}"
