"""Seeded synthetic rows for the store's tests: ED visits and police contacts of the test
catalogue (tests/gateway/store/conftest.py), spread over ``days`` days from ``first_day``."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

FIRST_DAY = (dt.date(2023, 10, 1) - dt.date(1970, 1, 1)).days  # the data crosses a year end


def visits(
    *, seed: int, n: int, people: int, days: int, exact: bool = True, first_day: int = FIRST_DAY
) -> list[dict[str, Any]]:
    """Visits whose stays are quarter hours (``exact``: every sum is exact whatever the order of
    addition) or arbitrary doubles."""
    rnd = random.Random(seed)
    return [
        {
            "subject": f"person-{rnd.randrange(people)}",
            "event_day": first_day + rnd.randrange(days),
            "district": rnd.choice(("D01", "D02", "D03", "D04")),
            "age_band": rnd.choice(("0-17", "18-34", "35-64", "65+")),
            "sex": rnd.choice(("F", "M", "X")),
            "presentation": rnd.choice(("overdose", "injury", "other")),
            "stay_hours": rnd.randrange(0, 72 * 4) / 4 if exact else rnd.uniform(0, 72),
        }
        for _ in range(n)
    ]


def contacts(
    *, seed: int, n: int, people: int, days: int, first_day: int = FIRST_DAY
) -> list[dict[str, Any]]:
    """Police contacts of the same population."""
    rnd = random.Random(seed)
    return [
        {
            "subject": f"person-{rnd.randrange(people)}",
            "event_day": first_day + rnd.randrange(days),
            "district": rnd.choice(("D01", "D02", "D03", "D04")),
            "incident_type": rnd.choice(("assault", "welfare_check", "other")),
        }
        for _ in range(n)
    ]
