"""Disclosure control (DESIGN §9), as pure functions: the requested grid, primary and secondary
suppression on distinct subjects, the (n,k) dominance rule for sums and means, rounding, and the
wire form of what is released."""

from gateway.disclosure._dominance import DEFAULT_DOMINANCE, Dominance, dominated, protect_sums
from gateway.disclosure._grid import Grid, GridKey, build_grid, month_keys, quarter_keys, year_keys
from gateway.disclosure._noise import Noise, base_measures, laplace, noise_key, noisy_value
from gateway.disclosure._proto import ReleaseInfo, to_proto
from gateway.disclosure._release import Released, ReleasedCell, ReleasedValue, apply_disclosure
from gateway.disclosure._round import round_mean, round_to_base
from gateway.disclosure._suppress import Relation, suppress

__all__ = [
    "DEFAULT_DOMINANCE",
    "Dominance",
    "Grid",
    "GridKey",
    "Noise",
    "Relation",
    "ReleaseInfo",
    "Released",
    "ReleasedCell",
    "ReleasedValue",
    "apply_disclosure",
    "base_measures",
    "build_grid",
    "dominated",
    "laplace",
    "month_keys",
    "noise_key",
    "noisy_value",
    "protect_sums",
    "quarter_keys",
    "round_mean",
    "round_to_base",
    "suppress",
    "to_proto",
    "year_keys",
]
