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
    # floor(a/b / base + 1/2) * base over the value's exact integer ratio a/b, in whole numbers:
    # the same exact result as with Fractions, which reduce after every step (a grid of 720
    # cells rounds over a thousand values an answer)
    a, b = _ratio(value)
    return float((2 * a + b * base) // (2 * b * base) * base)


def round_mean(total: float, records: int) -> float:
    """``total / records`` to one decimal place; halves go up."""
    if records < 1:
        raise GatewayError("a mean was asked of a group without records")
    return float(Fraction(math.floor(_exact(total) / records * 10 + Fraction(1, 2)), 10))


def _ratio(value: float) -> tuple[int, int]:
    """The exact ``(numerator, denominator)`` of a float or an int (not converted: a large int
    has no exact float)."""
    try:
        return value.as_integer_ratio()
    except (ValueError, OverflowError, TypeError, AttributeError) as exc:
        raise GatewayError("a raw aggregate is not a finite number") from exc


def _exact(value: float) -> Fraction:
    try:
        return Fraction(value)
    except (ValueError, OverflowError, TypeError) as exc:
        raise GatewayError("a raw aggregate is not a finite number") from exc
