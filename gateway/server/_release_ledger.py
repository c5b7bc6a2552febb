"""The release-ledger step of an aggregate query (DESIGN §9 items 3 and 6): compare what is about
to be released with what the agreement released before, withhold what differencing would give
away, and hand the audit append the ledger rows to write in its own transaction.

The decisions are ``gateway.disclosure._ledger``'s (pure); the counts are the store's (SQL).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from gateway.catalogue import Catalogue
from gateway.disclosure import Dominance, Grid, Released, ReleasedCell
from gateway.disclosure._ledger import (
    CellPredicate,
    Check,
    LedgerCell,
    cells_to_withhold,
    describe_cells,
    domains_of,
    grouped_pairs,
    plan_checks,
    sums_to_check,
    sums_to_withhold,
)
from gateway.errors import PermissionDenied
from gateway.query import QuerySpec, RawResult
from gateway.store._base import Store
from gateway.store._ledger import LedgerWrite

# Each check is one exact distinct-subject count over the dataset, and a statement holds 64 of them
# (gateway/store/_ledger.py); the one-part checks of disjoint parts are answered together, a
# grouped statement per layer of containers, GROUPED_LAYERS_MAX at most (grouped_pairs,
# container_layers), and do not count.
# Beyond one statement's worth of the others, a query nested in a large earlier release would
# scan the table over and over for minutes. Such a query is refused, on what the request and the
# ledger say alone (never on a count).
MAX_LEDGER_CHECKS = 64

# A cell the ledger withholds re-enters suppression as a small cell of one subject: withheld, and
# protected like any small cell, so this query's total and other cells cannot give it back.
_SMALL = 1


def ledger_release(
    store: Store,
    spec: QuerySpec,
    raw: RawResult,
    grid: Grid,
    released: Released,
    *,
    catalogue: Catalogue,
    disclose: Callable[[RawResult], Released],
    agreement_id: str,
    decision_id: str,
    k: int,
    dominance: Dominance,
) -> tuple[Released, LedgerWrite]:
    """The release after the differencing checks, and the ledger rows it adds."""
    predicates = describe_cells(spec, grid, catalogue)
    ledger, seen = store.release_ledger(agreement_id, spec.dataset)
    out = released
    if ledger:
        checks = plan_checks(_released(predicates, released), ledger, domains_of(catalogue, spec.dataset))
        # Planned over the cells suppression released, so whether it refuses depends on how many
        # it withheld: what the answer itself would show. Planned over every cell, a repeated
        # query that had withheld cells would be refused, since those are never in the ledger.
        if len(grouped_pairs(checks)[1]) > MAX_LEDGER_CHECKS:
            raise LedgerTooBroad(agreement_id)
        withhold: set[int] = set()
        if checks:
            differences = store.ledger_differences(spec.dataset, checks, as_of=raw.watermark)
            withhold |= cells_to_withhold(checks, differences, k=k)
            withhold |= _dominated_differences(
                store,
                spec,
                checks,
                predicates=predicates,
                released=released,
                ledger=ledger,
                dominance=dominance,
                as_of=raw.watermark,
            )
        withhold |= _changed_since_released(
            store,
            spec.dataset,
            _released(predicates, released),
            ledger,
            k,
            checks=checks,
            as_of=raw.watermark,
        )
        if withhold:
            out = disclose(_as_small(spec, raw, grid, frozenset(withhold)))
    cells = tuple(
        (predicate, _values(spec, cell))
        for predicate, cell in zip(predicates, (*out.cells, out.total), strict=True)
        if any(not v.withheld for v in cell.values)
    )
    return out, LedgerWrite(agreement_id, spec.dataset, decision_id, seen, cells, released_at=raw.watermark)


def _dominated_differences(
    store: Store,
    spec: QuerySpec,
    checks: tuple[Check, ...],
    *,
    predicates: tuple[CellPredicate, ...],
    released: Released,
    ledger: tuple[LedgerCell, ...],
    dominance: Dominance,
    as_of: str,
) -> frozenset[int]:
    """New cells whose release would make a difference of released sums that the dominance rule
    withholds when asked for directly (a sum of a few people's values), as a people count's
    difference below k is withheld."""
    if not spec.sum_fields:
        return frozenset()
    shown: dict[CellPredicate, frozenset[str]] = {cell.predicate: cell.labels for cell in ledger}
    for predicate, cell in zip(predicates, (*released.cells, released.total), strict=True):
        shown[predicate] = shown.get(predicate, frozenset()) | frozenset(_values(spec, cell))
    items = sums_to_check(checks, shown, spec.sum_fields)
    if not items:
        return frozenset()
    figures = store.ledger_sum_differences(
        spec.dataset,
        [(checks[n], f) for n, f in items],
        dominance.n,
        as_of=as_of,
        near_percent=dominance.percent,
    )
    return sums_to_withhold(checks, items, figures, percent=dominance.percent)


def _changed_since_released(
    store: Store,
    dataset: str,
    new: list[CellPredicate | None],
    ledger: tuple[LedgerCell, ...],
    k: int,
    *,
    checks: tuple[Check, ...] = (),
    as_of: str,
) -> set[int]:
    """Cells described exactly as a released one (the same people by description) whose data
    changed since: the two answers would differ by the records stored in between. Withheld when
    those records belong to 1..k-1 people (none at all: the answer is the one released before).

    The same holds for every released cell a check of this release derives a difference from:
    the checks count today's data, but the analyst subtracts the figures as released then, so a
    new union of old cells ({D01, D02} after D01 and D02) minus them would be the newcomers of
    those cells. The new cells of such a check are withheld when an old cell's newcomers number
    1..k-1 (each old cell's change is then 0 or at least k people, and so is their sum).

    Changes are counted up to ``as_of``, the data this answer read (its watermark), not the data
    stored since. A ledger cell released from newer data than this answer read (a racing release
    under the agreement, written while this one was checked) differs from it by people this
    count cannot see: its cells are withheld, on the ledger's word alone."""
    last = {cell.predicate: cell.released_at for cell in ledger}
    asked: dict[tuple[CellPredicate, str], set[int]] = {}
    for number, predicate in enumerate(new):
        if predicate is not None and predicate in last:
            asked.setdefault((predicate, last[predicate]), set()).add(number)
    for check in checks:
        for predicate in check.derived_from:
            if predicate in last:
                asked.setdefault((predicate, last[predicate]), set()).update(check.withhold)
    if not asked:
        return set()
    newer = {n for (_, since), numbers in asked.items() if since > as_of for n in numbers}
    repeats = [repeat for repeat in asked if repeat[1] <= as_of]
    counts = store.ledger_newcomers(dataset, repeats, as_of=as_of) if repeats else []
    changed = {
        n for repeat, count in zip(repeats, counts, strict=True) if 0 < count < k for n in asked[repeat]
    }
    return newer | changed


def _released(predicates: tuple[CellPredicate, ...], released: Released) -> list[CellPredicate | None]:
    cells = (*released.cells, released.total)
    return [
        p if any(not v.withheld for v in c.values) else None for p, c in zip(predicates, cells, strict=True)
    ]


def _values(spec: QuerySpec, cell: ReleasedCell) -> Mapping[str, float]:
    return {m.label: v.value for m, v in zip(spec.measures, cell.values, strict=True) if not v.withheld}


def _as_small(spec: QuerySpec, raw: RawResult, grid: Grid, numbers: frozenset[int]) -> RawResult:
    """``raw`` with the cells numbered ``numbers`` (grid order, then the total) made small."""
    small = {grid[i] for i in numbers if i < len(grid)}
    total = raw.total
    if len(grid) in numbers or (not spec.group_by and () in small):
        total = dataclasses.replace(total, subjects=_SMALL)
    cells = tuple(dataclasses.replace(c, subjects=_SMALL) if tuple(c.key) in small else c for c in raw.cells)
    return dataclasses.replace(raw, cells=cells, total=total)


class LedgerTooBroad(PermissionDenied):
    """The query nests in (or around) so many earlier released cells that checking every
    difference would take too long: refused, with a reason from the request and the ledger only."""

    def __init__(self, agreement_id: str) -> None:
        reason = (
            f"this query's cells overlap cells released earlier under {agreement_id} in more "
            f"places than the release ledger checks in one request ({MAX_LEDGER_CHECKS}); "
            "ask for fewer cells, or for cells that do not nest inside or around earlier ones"
        )
        super().__init__((reason,))
