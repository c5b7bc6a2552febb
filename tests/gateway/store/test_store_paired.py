"""An aggregate's cells and total read side by side on two connections still come from one set of
rows: a batch that lands between the two snapshots is never mixed into one of them only."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sqlalchemy import Connection, text

from gateway.catalogue import Catalogue
from gateway.query import MeasureRef, QuerySpec
from gateway.store import SqlStore, open_store
from gateway.store._paired import PairedReader

SPEC = QuerySpec("visits", (MeasureRef("subjects"), MeasureRef("records")), ("district",))


def _rows(prefix: str, count: int) -> list[dict[str, Any]]:
    return [
        {
            "subject": f"{prefix}-{i}",
            "event_day": 19_800 + i,
            "district": ("D01", "D02")[i % 2],
            "age_band": "18-34",
            "sex": "F",
            "presentation": "other",
            "stay_hours": 2.0,
        }
        for i in range(count)
    ]


def test_side_by_side_reading_equals_one_snapshot(store: SqlStore, batches: Any) -> None:
    """With a free slot the total runs on a second connection, and the answer is the one a single
    snapshot gives."""
    batches.store(store, "visits", "b1", _rows("p", 30) + _rows("p", 10))
    store.aggregate(SPEC)  # the first answer also looks at the batch's subject numbers, once
    threads: list[str] = []
    original = store._db.snapshot

    @contextmanager
    def noted() -> Iterator[Connection]:
        threads.append(threading.current_thread().name)
        with original() as conn:
            yield conn

    store._db.snapshot = noted  # type: ignore[method-assign]
    try:
        paired = store.aggregate(SPEC)
    finally:
        store._db.snapshot = original  # type: ignore[method-assign]
    side_by_side, store._paired = store._paired, PairedReader(store._db, at_once=0)  # no slot
    try:
        assert store.aggregate(SPEC) == paired
    finally:
        store._paired.close()
        store._paired = side_by_side
    assert len(threads) == 2
    assert any(name.startswith("aggregate-total") for name in threads)
    assert paired.total.records == 40
    assert paired.total.subjects == 30


def test_a_batch_landing_between_the_two_snapshots_is_read_again_in_one(
    store_url: str, catalogue: Catalogue, batches: Any
) -> None:
    """A batch committed after one connection's snapshot and before the other's: the records no
    longer add up, so the pair is read again in one snapshot, and cells and total agree."""
    store = open_store(store_url, catalogue)
    writer = open_store(store_url, catalogue)
    try:
        batches.store(store, "visits", "b1", _rows("p", 20))
        store.aggregate(SPEC)  # b1's subject numbers looked at
        original = store._db.snapshot
        opened: list[int] = []

        def racing() -> AbstractContextManager[Connection]:
            return _racing(original, opened, lambda: batches.store(writer, "visits", "b2", _rows("q", 12)))

        store._db.snapshot = racing  # type: ignore[method-assign]
        try:
            result = store.aggregate(SPEC)
        finally:
            store._db.snapshot = original  # type: ignore[method-assign]
        # two side by side, then one for both statements, then a look at b2's subject numbers
        assert len(opened) == 4
        assert sum(cell.records for cell in result.cells) == result.total.records == 32
        assert result.total.subjects == 32
    finally:
        writer.close()
        store.close()


_LOCK = threading.Lock()


@contextmanager
def _racing(original: Any, opened: list[int], commit: Any) -> Iterator[Connection]:
    """The first snapshot is pinned before the batch commits, the second opens after it."""
    with _LOCK:
        opened.append(len(opened))
        first = len(opened) == 1
        if len(opened) == 2:  # the second of the side-by-side pair
            commit()
        context = original()
        conn = context.__enter__()
        if first:
            conn.execute(text("SELECT COUNT(*) FROM batches"))  # pins the snapshot: a read began
    try:
        yield conn
    except BaseException as exc:
        if not context.__exit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        context.__exit__(None, None, None)
