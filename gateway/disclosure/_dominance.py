"""The (n,k) dominance rule for sums and means (DESIGN §9.4), and its secondary suppression.

A cell's sum (and so its mean) is withheld when its ``n`` largest contributors hold more than
``percent`` % of it. A contributor is a subject: the store sums each person's records within
the cell before ranking (RawCell.tops), so one person with many records cannot pass as many
small contributors. Everything here is exact (fractions), so a share that sits on the limit is
never tipped either way by binary floating point.

Withholding a dominated sum is no protection if the total minus the released sums gives it
back. So, for each relation (parts adding up to a total) whose total sum is released while some
parts' sums are withheld, the withheld parts taken together must themselves pass the rule: their
combined top-n contributions may hold at most ``percent`` % of their combined sum, and at least
two parts are withheld. The combined top-n is bounded above by the sum of each part's own top-n
(a person's contributions to several parts add up, and the n largest people together can hold
no more than each part's n largest): conservative, never an underestimate. Released parts are
withheld as well, the ones that dilute the most first (largest ``percent`` % of the sum minus
top-n; ties in cell order), until that holds; when no choice of parts can make it hold the
total's sum is withheld instead.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from fractions import Fraction

from gateway.disclosure._suppress import Relation
from gateway.errors import GatewayError


@dataclass(frozen=True)
class Dominance:
    """The rule: withhold a sum whose ``n`` largest contributors hold more than ``percent`` %."""

    n: int = 2
    percent: int = 85

    def __post_init__(self) -> None:
        if self.n < 1 or not 0 < self.percent <= 100:
            raise GatewayError("the dominance rule needs n of at least 1 and a percentage in (0, 100]")


DEFAULT_DOMINANCE = Dominance()  # what an agreement that says nothing gets (policies/, DESIGN §9)


def dominated(total: float, top: float, percent: int) -> bool:
    """True when the top contributions ``top`` hold more than ``percent`` % of ``total``."""
    return _slack(total, top, percent) < 0


def protect_sums(
    sums: Sequence[float],
    tops: Sequence[float],
    withheld: Collection[int],
    relations: Sequence[Relation],
    *,
    percent: int,
) -> frozenset[int]:
    """The cells whose sum (and mean) of one measure to withhold.

    ``sums`` and ``tops`` hold each cell's sum and top-n contribution sum, numbered as for
    suppress(); ``withheld`` are the cells already withheld whole (on subject counts), whose
    sums are withheld with them. Adds the dominated cells, then what the relations need."""
    if len(sums) != len(tops):
        raise GatewayError("every cell needs both its sum and its top contributions")
    for relation in relations:
        if not all(0 <= i < len(sums) for i in (relation.total, *relation.parts)):
            raise GatewayError("a disclosure relation names a cell that does not exist")
    slack = [_slack(s, t, percent) for s, t in zip(sums, tops, strict=True)]
    hidden = set(withheld) | {i for i, room in enumerate(slack) if room < 0}
    changed = True
    while changed:  # withholding only grows, so this settles in at most len(sums) rounds
        changed = False
        for relation in relations:
            if relation.total in hidden:
                continue
            parts = list(dict.fromkeys(relation.parts))
            inside = [p for p in parts if p in hidden]
            if not inside:
                continue
            extra = _diluting_parts(parts, inside, slack, hidden)
            if extra is None:
                hidden.add(relation.total)
                changed = True
            elif extra:
                hidden.update(extra)
                changed = True
    return frozenset(hidden)


def _diluting_parts(
    parts: list[int], inside: list[int], slack: Sequence[Fraction], hidden: set[int]
) -> list[int] | None:
    """Released parts to withhold as well so the withheld ones pass the rule together."""
    count, room = len(inside), sum((slack[p] for p in inside), Fraction(0))
    candidates = sorted((p for p in parts if p not in hidden), key=lambda p: (-slack[p], p))
    extra: list[int] = []
    for part in candidates:
        if count >= 2 and room >= 0:
            break
        extra.append(part)
        count += 1
        room += slack[part]
    return extra if count >= 2 and room >= 0 else None


def _slack(total: float, top: float, percent: int) -> Fraction:
    """``percent`` % of the sum minus the top contributions, scaled by 100: below 0 is dominated.

    Additive over cells, so the slack of a union of cells is the sum of theirs (with the
    per-cell top-n as the union's conservative top-n). Built from the floats' exact integer
    ratios with one reduction: Fraction arithmetic reduces after every step, and a grid of 720
    cells takes two slacks a cell."""
    try:
        a, b = total.as_integer_ratio()
        c, d = top.as_integer_ratio()
    except (ValueError, OverflowError, TypeError, AttributeError) as exc:
        raise GatewayError("a raw aggregate is not a finite number") from exc
    return Fraction(a * percent * d - c * 100 * b, b * d)
