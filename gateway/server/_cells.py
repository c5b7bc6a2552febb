"""Why each withheld cell of an answer was withheld; the ``datashare_cells_withheld`` metric adds
them up (it does not say which rule, see gateway/server/_metrics.py).

Pure, and worked out after the fact from what disclosure control was given and what it released,
so the disclosure functions stay as they are. The reasons, first match wins:

- ``ledger``: suppression released the cell, the release ledger withheld it (DESIGN §9 items 3, 6);
- ``primary``: fewer than k distinct people (none at all included, unless zeros are shown);
- ``secondary``: withheld so that a small cell cannot be worked out from the total;
- ``no_records``: an empty cell shown as zeros whose mean does not exist;
- ``dominance``: its counts released, a sum or mean withheld by the dominance rule.

Only totals over all queries leave the gateway (no agreement or principal label), on the
operator's metrics port."""

from __future__ import annotations

from collections import Counter

from gateway.disclosure import Grid, Relation, Released, ReleasedCell, suppress
from gateway.query import QuerySpec, RawResult


def withheld_by_reason(
    spec: QuerySpec,
    raw: RawResult,
    grid: Grid,
    suppressed: Released,
    final: Released,
    *,
    k: int,
    show_zeros: bool,
) -> Counter[str]:
    """How many grid cells of ``final`` each reason withheld; ``suppressed`` is the release before
    the ledger step (the same object as ``final`` when the ledger withheld nothing)."""
    found = {tuple(cell.key): cell.subjects for cell in raw.cells}
    if not spec.group_by:
        found.setdefault((), raw.total.subjects)
    subjects = [found.get(key, 0) for key in grid]
    n = len(grid)
    small = suppress(
        [*subjects, raw.total.subjects], [Relation(n, tuple(range(n)))], k=k, show_zeros=show_zeros
    )
    reasons: Counter[str] = Counter()
    for i, (before, after) in enumerate(zip(suppressed.cells, final.cells, strict=True)):
        if not _withheld(after):
            continue
        if not _withheld(before):
            reasons["ledger"] += 1
        elif subjects[i] < k and not (show_zeros and subjects[i] == 0):
            reasons["primary"] += 1
        elif i in small:
            reasons["secondary"] += 1
        elif subjects[i] == 0:
            reasons["no_records"] += 1
        else:
            reasons["dominance"] += 1
    return reasons


def _withheld(cell: ReleasedCell) -> bool:
    return any(value.withheld for value in cell.values)
