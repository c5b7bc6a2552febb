"""Which cells to withhold (DESIGN §9 items 2 and 3), decided on distinct-subject counts alone.

Cells are numbered; a ``Relation`` says that some cells (its parts) add up to another (its
total) for every additive measure (records, sums). Releasing a total and all but one of its
parts gives the last part away by subtraction, so for every released total whose parts are
partly withheld:

(a) at least two parts are withheld, and
(b) the withheld parts together hold at least k subjects (the sum of their subject counts).

Released parts are added to the withheld set, smallest subject count first (ties: lowest
number, i.e. grid order), until both hold; when no choice of parts can satisfy them the total is
withheld instead. Today the only relation is the grand total over the grid; margins per
dimension will be further relations over the same numbering, and the loop below already settles
relations that share cells or whose totals are parts of others.

(b) sums subject counts across cells, which over-counts a person present in several withheld
cells (say, in two months): it is the agreed conservative-enough bound, not an exact count of the
people the difference describes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.errors import GatewayError


@dataclass(frozen=True)
class Relation:
    """Cells ``parts`` add up to cell ``total``."""

    total: int
    parts: tuple[int, ...]


def suppress(
    subjects: Sequence[int], relations: Sequence[Relation], *, k: int, show_zeros: bool = False
) -> frozenset[int]:
    """The numbers of the cells to withhold, given each cell's distinct-subject count.

    ``show_zeros`` (an agreement's ``zeros: show``, for data whose empty cells are structural and
    say nothing about anyone) releases cells that hold nobody as zeros; they are then public
    knowledge, so they are never picked to protect another cell either: withholding a known zero
    hides nothing."""
    if k < 1:
        raise GatewayError("the disclosure threshold k must be a positive whole number")
    for relation in relations:
        if not all(0 <= i < len(subjects) for i in (relation.total, *relation.parts)):
            raise GatewayError("a disclosure relation names a cell that does not exist")
    # Primary: fewer than k distinct subjects, including none at all (an empty cell is withheld
    # exactly like a small one, so zero and small cannot be told apart).
    withheld = {i for i, count in enumerate(subjects) if count < k and not (show_zeros and count == 0)}
    # Secondary: withholding only ever grows, so this settles in at most len(subjects) rounds.
    changed = True
    while changed:
        changed = False
        for relation in relations:
            if relation.total in withheld:
                continue
            hidden = [p for p in dict.fromkeys(relation.parts) if p in withheld]
            if not hidden:
                continue
            extra = _protecting_parts(relation, hidden, subjects, withheld, k=k, show_zeros=show_zeros)
            if extra is None:
                withheld.add(relation.total)
                changed = True
            elif extra:
                withheld.update(extra)
                changed = True
    return frozenset(withheld)


def _protecting_parts(
    relation: Relation,
    hidden: list[int],
    subjects: Sequence[int],
    withheld: set[int],
    *,
    k: int,
    show_zeros: bool,
) -> list[int] | None:
    """Released parts to withhold as well so (a) and (b) hold; None when none suffice."""
    count, held = len(hidden), sum(subjects[p] for p in hidden)
    candidates = sorted(
        (
            p
            for p in dict.fromkeys(relation.parts)
            if p not in withheld and not (show_zeros and subjects[p] == 0)
        ),
        key=lambda p: (subjects[p], p),
    )
    extra: list[int] = []
    for part in candidates:
        if count >= 2 and held >= k:
            break
        extra.append(part)
        count += 1
        held += subjects[part]
    return extra if count >= 2 and held >= k else None
