"""Dataset tables get ``subject_n``, the number the store counts people by, filled in for every row.

``subject_n`` is the first eight bytes of the stored (re-keyed) subject as a signed big-endian
BIGINT (gateway/store/_schema.py), so it is computed for old rows from what they hold. Counts use
it only once the store has seen that no two subjects of the dataset share one
(gateway/store/_subject_numbers.py); a row left without one keeps the store counting subjects.
Rows already holding one are left alone.

Revision ID: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_SQLITE_FUNCTION = "datashare_subject_n"
# bit(64) to bigint reads the bits as two's complement: the same number Python's signed read gives
_POSTGRES_VALUE = "('x' || encode(substring(subject from 1 for 8), 'hex'))::bit(64)::bigint"


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    quote = bind.dialect.identifier_preparer.quote
    if bind.dialect.name == "sqlite":
        # SQLite has no byte functions: the same arithmetic, in Python, for this connection
        driver = bind.connection.driver_connection
        driver.create_function(_SQLITE_FUNCTION, 1, _first_eight, deterministic=True)  # type: ignore[union-attr]
        value = f"{_SQLITE_FUNCTION}(subject)"
    else:
        value = _POSTGRES_VALUE
    for table in sorted(inspector.get_table_names()):
        if not table.startswith("ds_"):
            continue
        columns = {c["name"] for c in inspector.get_columns(table)}
        if "subject" not in columns:
            continue
        if "subject_n" not in columns:
            op.add_column(table, sa.Column("subject_n", sa.BigInteger(), nullable=True))
        # identifiers from the database's own catalogue, quoted; no value is interpolated
        op.execute(f"UPDATE {quote(table)} SET subject_n = {value} WHERE subject_n IS NULL")  # noqa: S608


def _first_eight(subject: bytes | None) -> int | None:
    return None if subject is None else int.from_bytes(subject[:8], "big", signed=True)


def downgrade() -> None:
    raise NotImplementedError("the store's history is kept: no downgrade")
