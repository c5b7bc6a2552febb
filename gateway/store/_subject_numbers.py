"""Whether a dataset's ``subject_n`` counts its people exactly: numbers match subjects one to one.

Counting distinct people is the costliest part of every answer, and an 8-byte number is counted
in about half the time of a 32-byte subject (gateway/store/_schema.py). The number is the
subject's first eight bytes: two different subjects share one with a chance of about n²/2⁶⁵ (one in
forty million for a million people), and were that ever to happen, a count by numbers would be one
person short. So a count by numbers is trusted only for data the store has seen to be free of
shared numbers, and an answer read from newer data is read again by subjects:

- Per dataset, the store keeps the newest batch stamp through which it has looked, and what it
  found. Batches are stamped in the order they become visible (gateway/store/_watermark.py), so
  the batches after that stamp are exactly the ones it has not looked at.
- Numbers and subjects must match one to one. A number held by two subjects makes a count one
  person short; a subject holding two numbers (a row edited by hand can) counts one person twice,
  which in the release ledger's differences is as bad: a person inside a part by one number is
  outside it by the other, and a dominant person's sum is split in two.
- The first look reads the whole table once: the distinct numbers, subjects and (number, subject)
  pairs, all three equal only for a one-to-one match. Later looks, if the dataset has batches
  stamped since, read every row holding a number of those batches, and every row of a subject
  of them. A row without a number (written before migration 0006 filled them, or by hand)
  counts as shared.
- A mismatch, once seen, stays: records are never deleted, so the dataset is counted by
  subjects from then on.

The look is made after the answer's read, so every record the answer counted (its batches are
stamped at or before its watermark) was stored before the look began. A look that fails (a
timeout, a lost connection) trusts nothing: the answer is read again by subjects, and so is
every later one of the dataset until the gateway restarts.

Only tables without the ``query`` profile's covering indexes are counted by numbers: those
indexes hold the subject, not its number, and answer the query alone (by numbers the table itself
would be read, about three times slower).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import Connection, Table, and_, distinct, func, select
from sqlalchemy.exc import SQLAlchemyError

from gateway.store._engine import Database
from gateway.store._schema import DatasetTable
from gateway.store._watermark import NOTHING_STORED, watermark_column


@dataclass(frozen=True)
class _Looked:
    through: str  # the newest batch stamp the look's snapshot saw
    shared: bool  # whether some number was held by two subjects (or a row had none)


class SubjectNumbers:
    """What the store has seen of each dataset's numbers; safe to share between threads."""

    def __init__(self, db: Database, batches: Table) -> None:
        self._db = db
        self._batches = batches
        self._looked: dict[str, _Looked] = {}
        self._locks: dict[str, threading.Lock] = {}  # one look per dataset at a time
        self._locks_lock = threading.Lock()

    def usable(self, target: DatasetTable) -> bool:
        """Whether counting ``target`` by numbers is worth trying: no covering index to read the
        subjects from, and no shared number seen."""
        seen = self._looked.get(target.dataset.name)
        return not target.table.indexes and (seen is None or not seen.shared)

    def exact_through(self, target: DatasetTable, watermark: str) -> bool:
        """Whether counts by numbers of ``target``'s records in batches stamped at or before
        ``watermark`` are exact; looks at the batches stored since the last look if needed."""
        if watermark == NOTHING_STORED:
            return True  # the answer counted no record
        dataset = target.dataset.name
        with self._lock_of(dataset):
            seen = self._looked.get(dataset)
            if seen is None or (not seen.shared and seen.through < watermark):
                try:
                    with self._db.snapshot() as conn:
                        seen = _look(conn, target, self._batches, seen)
                except SQLAlchemyError:
                    # nothing learnt, nothing trusted; and not tried again by every answer (a
                    # look past the statement timeout would cost each one that long)
                    self._looked[dataset] = _Looked(NOTHING_STORED, shared=True)
                    return False
                self._looked[dataset] = seen
        return not seen.shared and watermark <= seen.through

    def _lock_of(self, dataset: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(dataset, threading.Lock())


def _look(conn: Connection, target: DatasetTable, batches: Table, before: _Looked | None) -> _Looked:
    through = str(conn.execute(select(watermark_column(batches))).scalar_one())
    t = target.table
    if before is None or before.through == NOTHING_STORED:
        pairs = select(t.c.subject_n, t.c.subject).where(t.c.subject_n.is_not(None)).distinct().subquery()
        numbers, subjects, held, numbered, rows = conn.execute(
            select(
                func.count(distinct(t.c.subject_n)),
                func.count(distinct(t.c.subject)),
                select(func.count()).select_from(pairs).scalar_subquery(),
                func.count(t.c.subject_n),
                func.count(),
            )
        ).one()
        return _Looked(through, shared=numbers != held or subjects != held or numbered != rows)
    fresh_batches = select(batches.c.batch_id).where(
        batches.c.dataset == target.dataset.name, batches.c.received_at > before.through
    )
    if conn.execute(fresh_batches.limit(1)).first() is None:
        return _Looked(through, shared=before.shared)  # batches of other datasets only
    fresh = t.alias("fresh")
    numbers = select(fresh.c.subject_n).where(fresh.c.batch_id.in_(fresh_batches))
    unnumbered = select(fresh.c.batch_id).where(
        and_(fresh.c.batch_id.in_(fresh_batches), fresh.c.subject_n.is_(None))
    )
    held = t.alias("held")
    twice = (
        select(held.c.subject_n)
        .where(held.c.subject_n.in_(numbers))
        .group_by(held.c.subject_n)
        .having(func.count(distinct(held.c.subject)) > 1)
    )
    people = select(fresh.c.subject).where(fresh.c.batch_id.in_(fresh_batches))
    split = (
        select(held.c.subject)
        .where(held.c.subject.in_(people))
        .group_by(held.c.subject)
        .having(func.count(distinct(held.c.subject_n)) > 1)
    )
    shared = (
        conn.execute(unnumbered.limit(1)).first() is not None
        or conn.execute(twice.limit(1)).first() is not None
        or conn.execute(split.limit(1)).first() is not None
    )
    return _Looked(through, shared=shared)
