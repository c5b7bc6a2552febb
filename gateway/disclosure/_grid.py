"""The requested grid (DESIGN §9 items 1 and 7): every cell the answer will hold, fixed by the
request and the catalogue alone, never by the data, so an empty cell cannot show by its absence.
"""

from __future__ import annotations

import itertools
import math

from gateway.catalogue import Catalogue, Dataset
from gateway.errors import GatewayError, InvalidRequest
from gateway.query import QuerySpec

GridKey = tuple[str, ...]
Grid = tuple[GridKey, ...]


def build_grid(spec: QuerySpec, catalogue: Catalogue, *, max_cells: int) -> Grid:
    """Every cell key of ``spec``'s grid: the cartesian product of its axes in ``group_by`` order.

    Dimension values follow the domain's order, restricted by the spec's filter on that
    dimension; time runs over ``spec.months`` in time order. A query without ``group_by`` has the
    one cell ``()``. InvalidRequest (on ``group_by``) when the grid exceeds ``max_cells``.
    """
    dataset = catalogue.dataset(spec.dataset)
    if dataset is None:
        raise GatewayError("a query spec names a dataset the catalogue does not hold")
    axes = [_axis(name, spec, dataset) for name in spec.group_by]
    # The size is known before any key is built, so a huge request costs nothing to refuse.
    if math.prod(len(axis) for axis in axes) > max_cells:
        # Say no number: the size is the analyst's own arithmetic, but keeping every refusal free
        # of counts is the rule that needs no exceptions.
        raise InvalidRequest("group_by", "the requested grid has more cells than the agreement allows")
    return tuple(itertools.product(*axes))


def month_keys(first: str, last: str) -> tuple[str, ...]:
    """``YYYY-MM`` for every month from ``first`` to ``last`` inclusive."""
    start, stop = _month_number(first), _month_number(last)
    return tuple(f"{n // 12:04d}-{n % 12 + 1:02d}" for n in range(start, stop + 1))


def quarter_keys(first: str, last: str) -> tuple[str, ...]:
    """``YYYY-Qn`` for every quarter touching the months ``first`` to ``last``."""
    return tuple(dict.fromkeys(f"{m[:4]}-Q{(int(m[5:7]) - 1) // 3 + 1}" for m in month_keys(first, last)))


def year_keys(first: str, last: str) -> tuple[str, ...]:
    """``YYYY`` for every year touching the months ``first`` to ``last``."""
    return tuple(dict.fromkeys(m[:4] for m in month_keys(first, last)))


_TIME_AXES = {"month": month_keys, "quarter": quarter_keys, "year": year_keys}


def _axis(name: str, spec: QuerySpec, dataset: Dataset) -> tuple[str, ...]:
    time_axis = _TIME_AXES.get(name)
    if time_axis is not None:
        if spec.months is None:
            raise GatewayError("a query spec groups by time without a month range")
        return time_axis(*spec.months)
    dimension = dataset.dimension(name)
    if dimension is None:
        raise GatewayError("a query spec groups by a dimension the dataset does not have")
    allowed = dict(spec.filters).get(name)
    return tuple(v for v in dimension.domain if allowed is None or v in allowed)


def _month_number(month: str) -> int:
    # The spec was validated, so the text is YYYY-MM; anything else is a bug, not bad input.
    try:
        year, number = int(month[:4]), int(month[5:7])
    except ValueError as exc:
        raise GatewayError("a query spec holds a malformed month") from exc
    return year * 12 + number - 1
