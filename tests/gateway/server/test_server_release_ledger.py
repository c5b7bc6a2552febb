"""The newcomer step of the release ledger (gateway/server/_release_ledger.py): changes of cells
released before are counted up to the data the answer read, and a cell released from newer data
than the answer read is withheld without a count."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.disclosure._ledger import CellPredicate, LedgerCell
from gateway.server._release_ledger import _changed_since_released

OLD = "2026-03-01T10:00:00.000000Z"
ANSWER = "2026-03-01T11:00:00.000000Z"
NEWER = "2026-03-01T12:00:00.000000Z"


class _Counts:
    """Newcomer counts as a store gives them, remembering what it was asked."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.asked: list[tuple[list[tuple[CellPredicate, str]], str | None]] = []

    def ledger_newcomers(
        self, dataset: str, repeats: Sequence[tuple[CellPredicate, str]], as_of: str | None = None
    ) -> list[int]:
        self.asked.append((list(repeats), as_of))
        return [self.count] * len(repeats)


def _cell(predicate: CellPredicate, released_at: str) -> LedgerCell:
    return LedgerCell("dec-0", predicate, released_at, frozenset({"subjects"}))


def test_newcomers_are_counted_up_to_the_answers_watermark() -> None:
    """A cell asked again is checked for people stored between its last release and the data
    this answer read, and withheld when they are 1..k-1."""
    cell = CellPredicate("visits", (("district", ("D01",)),))
    store = _Counts(3)
    withheld = _changed_since_released(store, "visits", [cell], (_cell(cell, OLD),), 10, as_of=ANSWER)  # type: ignore[arg-type]
    assert withheld == {0}
    assert store.asked == [([(cell, OLD)], ANSWER)]


def test_a_cell_released_from_newer_data_than_the_answer_is_withheld_uncounted() -> None:
    """A racing release wrote the same cell from data newer than this answer read: the two differ
    by people no count up to this answer sees, so the cell is withheld, whatever the counts."""
    cell = CellPredicate("visits", (("district", ("D01",)),))
    store = _Counts(0)
    withheld = _changed_since_released(store, "visits", [cell], (_cell(cell, NEWER),), 10, as_of=ANSWER)  # type: ignore[arg-type]
    assert withheld == {0}
    assert store.asked == []
