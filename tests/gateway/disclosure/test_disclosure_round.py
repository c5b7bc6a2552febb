"""Rounding of released values: counts and sums to the base, means to one decimal, halves up."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from raw_cells import spread

from gateway.catalogue import Catalogue
from gateway.disclosure import ReleasedValue, apply_disclosure, build_grid, round_mean, round_to_base
from gateway.errors import GatewayError
from gateway.query import MeasureRef, QuerySpec, RawCell, RawResult


@pytest.mark.parametrize(
    ("value", "base", "expected"),
    [
        (12, 5, 10),
        (13, 5, 15),
        (12.5, 5, 15),  # a half goes up
        (7.5, 5, 10),
        (2, 5, 0),
        (2.5, 5, 5),
        (17, 1, 17),
        (149, 100, 100),
        (150, 100, 200),
        (123.4, 5, 125),
        (-2.5, 5, 0),  # halves go towards +infinity
        (-3, 5, -5),
    ],
)
def test_round_to_base(value: float, base: int, expected: float) -> None:
    """Values go to the nearest multiple of the base, halves upwards."""
    assert round_to_base(value, base) == expected


@given(
    st.one_of(st.integers(-(10**18), 10**18), st.integers(-(10**6), 10**6).map(float), st.floats(-1e9, 1e9)),
    st.integers(1, 1000),
)
def test_whole_and_fractional_values_round_as_the_exact_definition(value: float, base: int) -> None:
    """Whole numbers (counts, taken without fractions) and others round as floor(v / b + 1/2) * b
    computed exactly."""
    assert round_to_base(value, base) == float(math.floor(Fraction(value) / base + Fraction(1, 2)) * base)


@pytest.mark.parametrize(
    ("total", "records", "expected"),
    [(10, 3, 3.3), (1, 20, 0.1), (1, 4, 0.3), (2, 3, 0.7), (-1, 4, -0.2), (123.4, 23, 5.4), (72, 1, 72.0)],
)
def test_round_mean(total: float, records: int, expected: float) -> None:
    """Means are total / records to one decimal place, halves upwards, computed exactly."""
    assert round_mean(total, records) == expected


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_raw_value_is_an_internal_error(bad: float) -> None:
    """A non-finite raw figure is a GatewayError, never a released number."""
    with pytest.raises(GatewayError):
        round_to_base(bad, 5)
    with pytest.raises(GatewayError):
        round_mean(bad, 3)


def test_mean_without_records_is_an_internal_error() -> None:
    """A mean over no records is a GatewayError, not a division by zero."""
    with pytest.raises(GatewayError):
        round_mean(1.0, 0)


def test_release_rounds_cells_and_total_independently(catalogue: Catalogue) -> None:
    """Cells and the total are each rounded from their own raw values; a mean is worked out from
    the released (rounded) sum and record count, so it cannot undo their rounding."""
    measures = (
        MeasureRef("subjects"),
        MeasureRef("records"),
        MeasureRef("sum", "cost"),
        MeasureRef("mean", "cost"),
    )
    spec = QuerySpec("ed_visits", measures, ("sex",), (("sex", ("F", "M")),))
    raw = RawResult(
        (
            RawCell(("F",), 12, 23, {"cost": 123.4}, spread({"cost": 123.4}, 12)),
            RawCell(("M",), 12, 24, {"cost": 12.5}, spread({"cost": 12.5}, 12)),
        ),
        RawCell((), 24, 47, {"cost": 135.9}, spread({"cost": 135.9}, 24)),
    )
    grid = build_grid(spec, catalogue, max_cells=10)
    released = apply_disclosure(spec, raw, grid, k=10, round_to=5)
    assert [v.value for v in released.cells[0].values] == [10.0, 25.0, 125.0, 5.0]
    # The mean comes from the rounded figures (15 / 25 = 0.6), not the raw ones (12.5 / 24 = 0.52),
    # which would pin the raw sum to within 0.05 x 24 and undo its rounding to 5.
    assert [v.value for v in released.cells[1].values] == [10.0, 25.0, 15.0, 0.6]
    # 47 records round to 45 on their own, though the rounded cells add up to 50.
    assert released.total.values == (
        ReleasedValue(False, 25.0),
        ReleasedValue(False, 45.0),
        ReleasedValue(False, 135.0),
        ReleasedValue(False, 3.0),
    )
