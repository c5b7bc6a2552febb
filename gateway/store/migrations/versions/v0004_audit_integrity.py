"""The audit log's event schema v2 and its signed checkpoints (issue 6).

``audit_log`` gets ``schema_version`` (1 for every entry written before, which hashes exactly as
it did), ``erased`` and ``masked`` (the JSON pointers the log mask removed or replaced: none
before) and ``digests`` (per-field digests, so ``verify`` can name an edited column: none for
version-1 entries). ``audit_checkpoints`` holds the periodic signed checkpoints and the anchors
prunes leave. Each is added only where missing, as 0001 does.

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_NEW_AUDIT_COLUMNS = (
    ("schema_version", sa.Integer(), "1"),
    ("erased", sa.Text(), "[]"),
    ("masked", sa.Text(), "[]"),
    ("digests", sa.Text(), "{}"),
)


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    present = set(inspector.get_table_names())
    if "audit_log" in present:
        columns = {c["name"] for c in inspector.get_columns("audit_log")}
        for name, kind, default in _NEW_AUDIT_COLUMNS:
            if name not in columns:
                op.add_column(
                    "audit_log", sa.Column(name, kind, nullable=False, server_default=sa.text(f"'{default}'"))
                )
    if "audit_checkpoints" not in present:
        op.create_table(
            "audit_checkpoints",
            sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
            sa.Column("kind", sa.String(16), primary_key=True),
            sa.Column("head_hash", sa.String(64), nullable=False),
            sa.Column("timestamp", sa.String(40), nullable=False),
            sa.Column("key_id", sa.String(64), nullable=False),
            sa.Column("signature", sa.Text(), nullable=False),
        )


def downgrade() -> None:
    raise NotImplementedError("the store's history is kept: no downgrade")
