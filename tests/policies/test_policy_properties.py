"""Properties of the query decision over generated requests, under several versions of the
agreement: the positive allow check and the list of reasons never disagree, and whatever is
allowed stays inside the agreement's terms."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_testkit import AGREEMENT, copy_bundle, edit_agreement

from gateway.policy import QUERY_RULE, EmbeddedEngine, load_bundle

REASONS_RULE = "datashare/query/reasons"

# Versions of ag-2026-001: as shipped, and edited the ways an agreement changes in practice.
VARIANTS: dict[str, dict[str, Any]] = {
    "shipped": {},
    "suspended": {"status": "suspended"},
    "k-below-floor": {"k": 5},
    "no-linkage": {"linkage": []},
    "narrow": {"dimensions": ["district", "year"], "filters": ["district"], "max_group_by": 1, "k": 20},
    "expired": {"valid_until": "2026-06-30"},
}

DIMENSIONS = [
    "district",
    "month",
    "quarter",
    "year",
    "sex",
    "age_band",
    "incident_type",
    "presentation",
    "nope",
]
MEASURES = ["subjects", "records", "sum:length_of_stay_hours", "mean:length_of_stay_hours", "sum:nope"]
DATASETS = ["ed_visits", "police_incidents", "tax_returns"]


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, EmbeddedEngine]:
    built = {}
    for name, fields in VARIANTS.items():
        root = copy_bundle(tmp_path_factory.mktemp(name))
        if fields:
            edit_agreement(root, **fields)
        built[name] = EmbeddedEngine.from_bundle(load_bundle(root))
    return built


def mostly(good: Any, *others: Any) -> st.SearchStrategy[Any]:
    """The good value nine times in ten, else one of the others: most generated queries differ
    from an allowed one in a field or two, which is where allow and deny meet."""
    return st.integers(0, 9).flatmap(lambda i: st.just(good) if i else st.sampled_from(others))


def names_from(
    good: list[str], everything: list[str], min_size: int, max_size: int
) -> st.SearchStrategy[Any]:
    """Mostly a list of allowed names; sometimes any names, repeats and all."""
    return st.integers(0, 4).flatmap(
        lambda i: (
            st.lists(st.sampled_from(good), min_size=min_size, max_size=max_size, unique=True)
            if i
            else st.lists(st.sampled_from(everything), max_size=max_size + 1)
        )
    )


links = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "dataset": mostly("police_incidents", "ed_visits", "tax_returns"),
            "days_before": mostly(30, 0, 90, 91, -1, 1.5),
            "days_after": mostly(0, 7, 90, 365),
            "filters": names_from(["incident_type", "district"], DIMENSIONS, 0, 2),
        }
    ),
)

requests = st.fixed_dictionaries(
    {
        "agreement_id": mostly(AGREEMENT, "ag-1999-999", ""),
        "purpose": mostly("overdose-prevention", "service-planning", "marketing", ""),
        "dataset": mostly("ed_visits", "police_incidents", "tax_returns"),
        "measures": names_from(["subjects", "records"], MEASURES, 1, 2),
        "group_by": names_from(["district", "month", "year", "sex", "age_band"], DIMENSIONS, 0, 3),
        "filters": names_from(["district", "age_band"], DIMENSIONS, 0, 2),
        "months": mostly(None, {"first": "2026-01", "last": "2026-06"}, "2026"),
        "link": links,
    }
)

inputs = st.fixed_dictionaries(
    {
        "principal": st.fixed_dictionaries(
            {
                "agency": mostly("health", "metro-police", "oversight", "nobody"),
                "role": mostly("analyst", "agent", "auditor", "admin"),
                "name": st.just("someone"),
                "id": st.just("spiffe://consortium.test/agency/x/analyst/someone"),
            }
        ),
        "action": mostly("query", "list_datasets", "ingest"),
        "request": requests,
        "now": mostly(
            "2026-11-22T10:00:00Z",
            "2026-01-01T00:00:00Z",
            "2025-12-31T23:59:59Z",
            "2028-12-31T23:59:59Z",
            "2029-01-01T00:00:00Z",
            "22/11/2026",
        ),
    }
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variant=st.sampled_from(sorted(VARIANTS)), inp=inputs)
def test_allow_and_reasons_never_disagree(
    engines: dict[str, EmbeddedEngine], variant: str, inp: dict[str, Any]
) -> None:
    """A query is allowed exactly when the policy finds no reason to deny it, and a deny always
    says why; so neither statement of the policy can drift from the other unnoticed."""
    engine = engines[variant]
    decision = engine.decide(QUERY_RULE, inp)
    reasons = engine.query(REASONS_RULE, inp)
    assert decision.error is None
    assert decision.allow == (len(reasons) == 0), (decision.allow, sorted(reasons))
    if not decision.allow:
        assert list(decision.reasons) == sorted(reasons)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variant=st.sampled_from(sorted(VARIANTS)), inp=inputs)
def test_whatever_is_allowed_stays_inside_the_agreement(
    engines: dict[str, EmbeddedEngine], variant: str, inp: dict[str, Any]
) -> None:
    """An allowed query comes from a health analyst, under an active agreement in force with k
    at or above the floor, for its purpose, asking only for measures, dimensions and filters of
    its obligations, within its group-by cap and never grouping a forbidden combination, linking only where and as far as it allows."""
    decision = engines[variant].decide(QUERY_RULE, inp)
    if not decision.allow:
        return
    request, obligations = inp["request"], decision.obligations
    terms: dict[str, Any] = {
        "status": "active",
        "k": 10,
        "valid_from": "2026-01-01",
        "valid_until": "2028-12-31",
    }
    terms.update(VARIANTS[variant])
    assert terms["status"] == "active"
    assert terms["k"] >= 10
    assert terms["valid_from"] <= inp["now"][:10] <= terms["valid_until"]
    assert inp["principal"] == {**inp["principal"], "agency": "health", "role": "analyst"}
    assert inp["action"] == "query"
    assert request["agreement_id"] == AGREEMENT
    assert request["purpose"] == "overdose-prevention"
    assert request["measures"]
    assert set(request["measures"]) <= set(obligations["measures"])
    assert set(request["group_by"]) <= set(obligations["dimensions"])
    assert not {"age_band", "district"} <= set(request["group_by"])  # the shipped forbidden pair
    assert len(request["group_by"]) <= obligations["max_group_by"]
    assert set(request["filters"]) <= set(obligations["filters"])
    assert obligations["k"] >= 10
    if request["link"] is not None:
        assert VARIANTS[variant].get("linkage") != []
        assert 0 <= request["link"]["days_before"] <= 90
        assert request["link"]["days_after"] <= 90


def test_the_generated_queries_reach_both_outcomes(engines: dict[str, EmbeddedEngine]) -> None:
    """The generator yields allowed and denied queries alike, so the properties above are not
    vacuously true of denials only."""
    outcomes: list[bool] = []

    @settings(max_examples=200, deadline=None, database=None, derandomize=True)
    @given(inp=inputs)
    def collect(inp: dict[str, Any]) -> None:
        outcomes.append(engines["shipped"].decide(QUERY_RULE, inp).allow)

    collect()
    assert outcomes.count(True) >= 10
    assert outcomes.count(False) >= 10
