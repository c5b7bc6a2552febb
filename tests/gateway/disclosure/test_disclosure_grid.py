"""build_grid: every requested cell, in a fixed order, fixed by the request alone."""

from __future__ import annotations

import pytest

from gateway.catalogue import Catalogue
from gateway.disclosure import build_grid
from gateway.errors import InvalidRequest
from gateway.query import Filters, MeasureRef, QuerySpec

RECORDS = (MeasureRef("records"),)
WINTER = ("2023-11", "2024-02")  # four months across a year boundary


def spec(group_by: tuple[str, ...], filters: Filters = (), months: tuple[str, str] = WINTER) -> QuerySpec:
    return QuerySpec("ed_visits", RECORDS, group_by, filters, months)


def test_no_grouping_is_one_empty_key(catalogue: Catalogue) -> None:
    """Without group_by the grid is the single cell ()."""
    assert build_grid(spec(()), catalogue, max_cells=1) == ((),)


def test_months_across_a_year_boundary(catalogue: Catalogue) -> None:
    """Month keys run from the first to the last month inclusive, through the new year."""
    assert build_grid(spec(("month",)), catalogue, max_cells=100) == (
        ("2023-11",),
        ("2023-12",),
        ("2024-01",),
        ("2024-02",),
    )


def test_quarters_across_a_year_boundary(catalogue: Catalogue) -> None:
    """Quarter keys cover every quarter the month range touches, in time order."""
    assert build_grid(spec(("quarter",)), catalogue, max_cells=100) == (("2023-Q4",), ("2024-Q1",))


def test_years_across_a_year_boundary(catalogue: Catalogue) -> None:
    """Year keys cover every year the month range touches, in time order."""
    assert build_grid(spec(("year",)), catalogue, max_cells=100) == (("2023",), ("2024",))


def test_long_range_quarters(catalogue: Catalogue) -> None:
    """A range from February of one year to November of the next spans eight quarters."""
    grid = build_grid(spec(("quarter",), months=("2023-02", "2024-11")), catalogue, max_cells=100)
    assert [k[0] for k in grid] == [f"{y}-Q{q}" for y in (2023, 2024) for q in (1, 2, 3, 4)]


def test_dimension_follows_domain_order_restricted_by_filter(catalogue: Catalogue) -> None:
    """A filtered dimension's axis keeps the domain's order, not the filter's, and only its values."""
    grid = build_grid(spec(("age_band",), (("age_band", ("65+", "0-17")),)), catalogue, max_cells=100)
    assert grid == (("0-17",), ("65+",))


def test_filter_on_another_dimension_leaves_the_axis_whole(catalogue: Catalogue) -> None:
    """Filtering a dimension not grouped by does not shrink the grouped axis."""
    grid = build_grid(spec(("sex",), (("district", ("D02",)),)), catalogue, max_cells=100)
    assert grid == (("F",), ("M",), ("X",))


def test_cartesian_product_in_group_by_order(catalogue: Catalogue) -> None:
    """Keys are the product of the axes, the first group_by entry varying slowest."""
    grid = build_grid(spec(("quarter", "sex")), catalogue, max_cells=100)
    assert grid == (
        ("2023-Q4", "F"),
        ("2023-Q4", "M"),
        ("2023-Q4", "X"),
        ("2024-Q1", "F"),
        ("2024-Q1", "M"),
        ("2024-Q1", "X"),
    )
    reversed_grid = build_grid(spec(("sex", "quarter")), catalogue, max_cells=100)
    assert reversed_grid[:2] == (("F", "2023-Q4"), ("F", "2024-Q1"))
    assert len(reversed_grid) == len(grid)


def test_grid_size_is_product_of_axes(catalogue: Catalogue) -> None:
    """Three axes of 4 months, 3 districts and 3 sexes give 36 distinct keys."""
    grid = build_grid(spec(("month", "district", "sex")), catalogue, max_cells=36)
    assert len(grid) == 36
    assert len(set(grid)) == 36


def test_grid_over_max_cells_is_refused_without_counts(catalogue: Catalogue) -> None:
    """One cell over max_cells is refused on group_by, and the message holds no number."""
    with pytest.raises(InvalidRequest) as caught:
        build_grid(spec(("month", "district", "sex")), catalogue, max_cells=35)
    assert caught.value.field == "group_by"
    assert not any(ch.isdigit() for ch in caught.value.message)
