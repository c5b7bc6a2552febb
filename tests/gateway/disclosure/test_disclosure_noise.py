"""Noise keyed on the people, not on the wording (DESIGN §9.6): pure-function properties."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.disclosure import Noise, base_measures, laplace, noise_key, noisy_value
from gateway.errors import GatewayError
from gateway.query import MeasureRef, QuerySpec, RawCell

SUBJECTS, RECORDS = MeasureRef("subjects"), MeasureRef("records")
SUM, MEAN = MeasureRef("sum", "cost"), MeasureRef("mean", "cost")
SPEC = QuerySpec("ed_visits", (SUBJECTS, SUM), ("district",))
KEY = noise_key(b"\x01" * 32)


def noise(epsilon: float = 1.0, version: int = 7) -> Noise:
    return Noise(KEY, epsilon, "ed_visits", version, {"cost": 5000.0})


def cell(people: int, subjects: int = 40, records: int = 50, cost: float = 1234.5) -> RawCell:
    return RawCell(("D01",), subjects, records, {"cost": cost}, {"cost": 0.0}, people)


def test_the_key_is_derived_and_differs_from_the_rest_key() -> None:
    """HKDF of the rest key: 32 bytes, stable, and not the rest key itself."""
    assert noise_key(b"\x01" * 32) == KEY and len(KEY) == 32 and KEY != b"\x01" * 32


@given(people=st.integers(0, 2**40))
def test_the_same_people_and_figures_give_the_same_value(people: int) -> None:
    """Nothing but the key, the people, the figures, the measure and the data version decide it."""
    assert noisy_value(noise(), SPEC, SUBJECTS, cell(people)) == noisy_value(
        noise(), SPEC, SUBJECTS, cell(people)
    )


def test_other_people_or_new_data_draw_again() -> None:
    """A different people digest, or a new data version, gives an independent draw."""
    values = {noisy_value(noise(), SPEC, SUBJECTS, cell(p)) for p in range(50)}
    assert len(values) > 40
    big = cell(1, subjects=1000)  # far from 0, so no draw is cut off there
    assert noisy_value(noise(version=8), SPEC, SUBJECTS, big) != noisy_value(noise(), SPEC, SUBJECTS, big)


def test_the_noise_has_the_laplace_scale_the_budget_implies() -> None:
    """Over many people sets, subjects noise has mean about 0 and mean absolute deviation about
    the scale: 1 (sensitivity) x 2 (cells and total) x 3 (every base measure the agreement
    allows: subjects, records, one clamped column) / epsilon = 6 at epsilon 1."""
    draws = [noisy_value(noise(), SPEC, SUBJECTS, cell(p, subjects=1000)) - 1000 for p in range(4000)]  # type: ignore[operator]
    assert abs(statistics.fmean(draws)) < 0.6
    assert 5.4 < statistics.fmean(abs(d) for d in draws) < 6.6


def test_two_wordings_cannot_cancel_the_noise() -> None:
    """``sum`` alone and ``records, sum`` give the very same noisy sum (one scale, one draw), so
    combining them (2a - b) recovers nothing beyond either answer."""
    alone = QuerySpec("ed_visits", (SUM,), ("district",))
    with_records = QuerySpec("ed_visits", (RECORDS, SUM), ("district",))
    for p in range(50):
        a = noisy_value(noise(), alone, SUM, cell(p, cost=40000.0))
        b = noisy_value(noise(), with_records, SUM, cell(p, cost=40000.0))
        assert a == b


def test_another_epsilon_draws_independently() -> None:
    """Two epsilons over the same people draw different variates, not one variate at two
    proportional scales (which two answers would solve for the true value)."""
    true = 40000.0
    pairs = [
        (
            noisy_value(noise(1.0), SPEC, SUM, cell(p, cost=true)),
            noisy_value(noise(0.5), SPEC, SUM, cell(p, cost=true)),
        )
        for p in range(200)
    ]
    # with one shared variate, (b - t) == 2 (a - t) for every pair
    assert sum(1 for a, b in pairs if math.isclose(b - true, 2 * (a - true), rel_tol=1e-9)) < 5  # type: ignore[operator]


def test_laplace_quantiles() -> None:
    """The quantile is 0 at one half, antisymmetric, and ln 2 x scale away at a quarter."""
    assert laplace(0.5, 3.0) == 0.0
    assert laplace(0.25, 2.0) == pytest.approx(-2.0 * math.log(2))
    assert laplace(0.9, 1.0) == pytest.approx(-laplace(0.1, 1.0))
    for u in (0.0, 1.0):
        with pytest.raises(GatewayError):
            laplace(u, 1.0)


def test_base_measures_and_mean_from_noisy_sum_and_records() -> None:
    """A mean is its noisy sum over its noisy records (so it costs nothing more), and those are
    the draws the sum and the records get themselves."""
    spec = QuerySpec("ed_visits", (RECORDS, SUM, MEAN), ("district",))
    assert base_measures(spec) == ("records", "sum:cost")
    assert base_measures(QuerySpec("ed_visits", (MEAN,), ())) == ("records", "sum:cost")
    c = cell(99)
    total, records = noisy_value(noise(), spec, SUM, c), noisy_value(noise(), spec, RECORDS, c)
    assert total is not None and records is not None
    expected = total / records if records >= 1 else None
    assert noisy_value(noise(), spec, MEAN, c) == expected


def test_values_never_go_below_zero_and_bad_terms_fail() -> None:
    """A small count with large noise is released as 0 at the least; a sum without a clamp
    bound, a missing key or a non-positive epsilon is a GatewayError, never a guess."""
    assert min(noisy_value(noise(0.01), SPEC, SUBJECTS, cell(p, subjects=1)) or 0 for p in range(200)) == 0.0  # type: ignore[type-var]
    with pytest.raises(GatewayError):
        noisy_value(Noise(KEY, 1.0, "ed_visits", 1, {}), SPEC, SUM, cell(1))
    for key, epsilon in ((b"", 1.0), (KEY, 0.0), (KEY, math.inf)):
        with pytest.raises(GatewayError):
            Noise(key, epsilon, "ed_visits", 1, {"cost": 1.0})
