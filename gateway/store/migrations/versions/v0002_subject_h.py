"""Dataset tables made before the noise digest get ``subject_h``, filled in for every row.

``subject_h`` is the first four bytes of the stored (re-keyed) subject as a big-endian number
(gateway/store/_schema.py), so it can be computed for old rows from what they hold: a table that
lacked it answers noisy queries exactly as if its rows had been stored with it. Rows already
holding one are left alone.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_SQLITE_FUNCTION = "datashare_subject_h"


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    quote = bind.dialect.identifier_preparer.quote
    if bind.dialect.name == "sqlite":
        # SQLite has no byte functions: the same arithmetic, in Python, for this connection
        driver = bind.connection.driver_connection
        driver.create_function(_SQLITE_FUNCTION, 1, _first_four, deterministic=True)  # type: ignore[union-attr]
        value = f"{_SQLITE_FUNCTION}(subject)"
    else:
        value = (
            "(get_byte(subject, 0)::bigint << 24) | (get_byte(subject, 1) << 16)"
            " | (get_byte(subject, 2) << 8) | get_byte(subject, 3)"
        )
    for table in sorted(inspector.get_table_names()):
        if not table.startswith("ds_"):
            continue
        columns = {c["name"] for c in inspector.get_columns(table)}
        if "subject" not in columns:
            continue
        if "subject_h" not in columns:
            op.add_column(table, sa.Column("subject_h", sa.BigInteger(), nullable=True))
        # identifiers from the database's own catalogue, quoted; no value is interpolated
        op.execute(f"UPDATE {quote(table)} SET subject_h = {value} WHERE subject_h IS NULL")  # noqa: S608


def _first_four(subject: bytes | None) -> int | None:
    return None if subject is None else int.from_bytes(subject[:4], "big")


def downgrade() -> None:
    raise NotImplementedError("the store's history is kept: no downgrade")
