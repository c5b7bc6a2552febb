"""Batches stamped in commit order (issue 5): an index on ``batches.received_at``.

Each batch is now stamped as the last statement of its transaction, just after the newest stored
stamp, and each aggregate reads the newest stamp its snapshot sees as its data watermark
(gateway/store/_watermark.py): the index makes both one seek. Stored stamps are kept as they are.
A gateway from before this revision stamps batches the old way; it refuses to start on a store at
a revision it does not know, so once upgraded, every writer stamps in commit order.

Revision ID: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

INDEX = "ix_batches_received_at"


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())  # 0001 made the batch register if it was missing
    if INDEX not in {ix["name"] for ix in inspector.get_indexes("batches")}:
        op.create_index(INDEX, "batches", ["received_at"])


def downgrade() -> None:
    raise NotImplementedError("the store's history is kept: no downgrade")
