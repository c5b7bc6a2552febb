"""PostgreSQL: dataset tables lose their foreign key to ``batches``.

PostgreSQL checks a foreign key with a trigger that runs a locking lookup for every inserted
row, which more than doubled the server's CPU per record at ingest; the reference holds by
construction (see gateway/store/_schema.py). SQLite keeps its key: nothing to do there.

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    inspector = sa.inspect(bind)
    for table in sorted(inspector.get_table_names()):
        if not table.startswith("ds_"):
            continue
        for fk in inspector.get_foreign_keys(table):
            if fk["referred_table"] == "batches" and fk["name"]:
                op.drop_constraint(fk["name"], table, type_="foreignkey")


def downgrade() -> None:
    raise NotImplementedError("the store's history is kept: no downgrade")
