"""Rounding of released values (DESIGN §9 item 5), in exact arithmetic so a value that sits on a
half is never tipped the other way by binary floating point."""

from __future__ import annotations

import math
from fractions import Fraction

from gateway.errors import GatewayError


def round_to_base(value: float, base: int) -> float:
    """``value`` to the nearest multiple of ``base``; halves go up (towards +infinity)."""
    if base < 1:
        raise GatewayError("the rounding base must be a positive whole number")
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        # counts, the most of what is rounded: floor(v / b + 1/2) * b in whole numbers, the same
        # exact result without a Fraction (a grid of 720 cells rounds over a thousand values)
        return float((2 * int(value) + base) // (2 * base) * base)
    return float(math.floor(_exact(value) / base + Fraction(1, 2)) * base)


def round_mean(total: float, records: int) -> float:
    """``total / records`` to one decimal place; halves go up."""
    if records < 1:
        raise GatewayError("a mean was asked of a group without records")
    return float(Fraction(math.floor(_exact(total) / records * 10 + Fraction(1, 2)), 10))


def _exact(value: float) -> Fraction:
    try:
        return Fraction(value)
    except (ValueError, OverflowError, TypeError) as exc:
        raise GatewayError("a raw aggregate is not a finite number") from exc
