"""Raw cells as the store returns them, for the pure-function tests."""

from __future__ import annotations

from collections.abc import Mapping


def spread(sums: Mapping[str, float], subjects: int, n: int = 2) -> dict[str, float]:
    """The top-n contributions (RawCell.tops) when every subject contributes the same."""
    share = min(1.0, n / subjects) if subjects else 0.0
    return {field: total * share for field, total in sums.items()}
