"""The fixed tables as the store made them before migrations: batches, audit_log (with its four
indexes) and release_ledger.

A store made before Alembic came in already holds some or all of these: each table is created
only if missing, and a present audit log or ledger gets only the indexes it lacks. A frozen
copy of the layout on purpose: later layouts are later revisions.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    present = set(sa.inspect(op.get_bind()).get_table_names())
    if "batches" not in present:
        op.create_table(
            "batches",
            sa.Column("batch_id", sa.String(128), primary_key=True),
            sa.Column("agency", sa.String(64), nullable=False),
            sa.Column("dataset", sa.String(64), nullable=False),
            sa.Column("contract_version", sa.Integer(), nullable=False),
            sa.Column("record_count", sa.Integer(), nullable=False),
            sa.Column("content_digest", sa.String(64), nullable=False),
            sa.Column("received_at", sa.String(40), nullable=False),
        )
    if "audit_log" not in present:
        op.create_table(
            "audit_log",
            sa.Column("seq", _SEQ, primary_key=True, autoincrement=False),
            *(
                sa.Column(name, sa.String(), nullable=False)
                for name in (
                    "decision_id",
                    "timestamp",
                    "path",
                    "principal",
                    "agency",
                    "action",
                    "outcome",
                )
            ),
            sa.Column("reasons", sa.Text(), nullable=False),
            sa.Column("agreement_id", sa.String(), nullable=False),
            sa.Column("purpose", sa.String(), nullable=False),
            sa.Column("policy_revision", sa.String(), nullable=False),
            sa.Column("query_fingerprint", sa.String(), nullable=False),
            sa.Column("cells_released", sa.BigInteger(), nullable=False),
            sa.Column("cells_withheld", sa.BigInteger(), nullable=False),
            sa.Column("latency_ms", sa.Double(), nullable=False),
            sa.Column("input", sa.Text(), nullable=False),
            sa.Column("result", sa.Text(), nullable=False),
            sa.Column("prev_hash", sa.String(64), nullable=False),
            sa.Column("hash", sa.String(64), nullable=False),
        )
    _indexes(
        "audit_log",
        {
            "ix_audit_log_decision_id": ["decision_id"],
            "ix_audit_log_timestamp": ["timestamp"],
            "ix_audit_log_agreement_id": ["agreement_id"],
            "ix_audit_log_budget": ["agreement_id", "action", "outcome", "timestamp"],
        },
    )
    if "release_ledger" not in present:
        op.create_table(
            "release_ledger",
            sa.Column("id", _SEQ, primary_key=True, autoincrement=True),
            sa.Column("agreement_id", sa.String(64), nullable=False),
            sa.Column("dataset", sa.String(64), nullable=False),
            sa.Column("digest", sa.String(64), nullable=False),
            sa.Column("decision_id", sa.String(), nullable=False),
            sa.Column("predicate", sa.Text(), nullable=False),
            sa.Column("released", sa.Text(), nullable=False),
            sa.Column("released_at", sa.String(40), nullable=False),
        )
    _indexes("release_ledger", {"ux_release_ledger_cell": ["agreement_id", "dataset", "digest"]}, unique=True)


def _indexes(table: str, wanted: dict[str, list[str]], *, unique: bool = False) -> None:
    present = {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes(table)}
    for name, columns in wanted.items():
        if name not in present:
            op.create_index(name, table, columns, unique=unique)


def downgrade() -> None:
    raise NotImplementedError("the store's history is kept: no downgrade")
