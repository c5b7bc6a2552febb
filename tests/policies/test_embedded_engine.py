"""The embedded engine deciding with the shipped policies: allows with obligations, denies with
the reason at fault, listings by agency, and deny-with-error whenever the engine cannot decide."""

from __future__ import annotations

import functools
import gc
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from policy_testkit import (
    AGREEMENT,
    HEALTH_ANALYST,
    NOW,
    POLICE_ANALYST,
    POLICE_LINK,
    copy_bundle,
    edit_agreement,
    listing_input,
    query_input,
    write_module,
)

from gateway.errors import ConfigError, PolicyEngineError
from gateway.policy import (
    AUDIT_RULE,
    INGEST_RULE,
    LISTING_RULE,
    QUERY_RULE,
    EmbeddedEngine,
    load_bundle,
    make_engine,
)


def engine_for(root: Path, **require: Any) -> EmbeddedEngine:
    return EmbeddedEngine.from_bundle(load_bundle(root), **require)


# --- decisions with the shipped bundle --------------------------------------------------------


def test_health_analyst_query_is_allowed_with_obligations(engine: EmbeddedEngine) -> None:
    """A query within ag-2026-001 is allowed, stamped with the revision, with the agreement's terms."""
    decision = engine.decide(QUERY_RULE, query_input())
    assert decision.allow is True
    assert decision.error is None
    assert decision.reasons == ()
    assert decision.revision == engine.revision
    assert decision.path == QUERY_RULE
    assert decision.agreement["id"] == AGREEMENT
    obligations = decision.obligations
    assert (
        obligations["k"],
        obligations["round_to"],
        obligations["max_cells"],
        obligations["max_group_by"],
    ) == (
        10,
        5,
        2000,
        3,
    )
    assert "sum:length_of_stay_hours" in obligations["measures"]
    assert "incident_type" not in obligations["dimensions"]


def test_request_lists_may_be_tuples(engine: EmbeddedEngine) -> None:
    """Input built from frozen dataclasses (tuples) decides exactly as lists do."""
    decision = engine.decide(
        QUERY_RULE, query_input(measures=("subjects",), group_by=("district",), filters=())
    )
    assert decision.allow is True


@pytest.mark.parametrize(
    ("inp", "reason"),
    [
        pytest.param(
            query_input(POLICE_ANALYST),
            "agency 'metro-police' is not a receiving party of ag-2026-001",
            id="police-analyst",
        ),
        pytest.param(
            query_input(purpose="marketing"),
            "purpose 'marketing' is not a purpose of ag-2026-001",
            id="purpose",
        ),
        pytest.param(
            query_input(
                dataset="police_incidents", measures=["subjects"], filters=[], group_by=["incident_type"]
            ),
            "grouping by 'incident_type' is not allowed by ag-2026-001",
            id="forbidden-dimension",
        ),
        pytest.param(
            query_input(group_by=["district", "month", "sex", "age_band"]),
            "the query groups by 4 dimensions; ag-2026-001 allows at most 3",
            id="too-many-group-by",
        ),
        pytest.param(
            query_input(link={**POLICE_LINK, "days_before": 120}),
            "the link window of 120 days before the event exceeds the 90 days ag-2026-001 allows",
            id="link-window",
        ),
        pytest.param(
            query_input(measures=["mean:length_of_stay_hours"]),
            "measure 'mean:length_of_stay_hours' is not allowed by ag-2026-001",
            id="measure",
        ),
        pytest.param(
            query_input({**HEALTH_ANALYST, "role": "agent"}),
            "role 'agent' may not run aggregate queries; only analysts may",
            id="role",
        ),
    ],
)
def test_query_denials_name_what_is_at_fault(
    engine: EmbeddedEngine, inp: dict[str, Any], reason: str
) -> None:
    """Each way out of the agreement is a deny without error, carrying the reason that names it."""
    decision = engine.decide(QUERY_RULE, inp)
    assert decision.allow is False
    assert decision.error is None
    assert reason in decision.reasons
    assert list(decision.reasons) == sorted(decision.reasons)
    assert decision.obligations == {}


def test_link_within_the_window_is_allowed(engine: EmbeddedEngine) -> None:
    """The linkage entry lets ED visits be linked to police incidents within 90 days."""
    assert engine.decide(QUERY_RULE, query_input(link=POLICE_LINK)).allow is True


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        pytest.param(
            {"valid_until": "2026-06-30"}, "agreement ag-2026-001 expired on 2026-06-30", id="expired"
        ),
        pytest.param({"status": "suspended"}, "agreement ag-2026-001 is suspended", id="suspended"),
        pytest.param(
            {"valid_from": "2027-01-01"},
            "agreement ag-2026-001 is not in force until 2027-01-01",
            id="not-yet",
        ),
        pytest.param({"k": 5}, "agreement ag-2026-001 sets k below the consortium floor of 10", id="k-floor"),
    ],
)
def test_an_agreement_out_of_force_denies_every_query(
    tmp_path: Path, fields: dict[str, Any], reason: str
) -> None:
    """With the agreement edited in a copy of the bundle, the same valid query is denied, saying why."""
    root = copy_bundle(tmp_path)
    edit_agreement(root, **fields)
    decision = engine_for(root).decide(QUERY_RULE, query_input())
    assert decision.allow is False
    assert reason in decision.reasons
    assert decision.agreement["id"] == AGREEMENT


def test_listing_shows_the_health_analyst_both_datasets(engine: EmbeddedEngine) -> None:
    """A health analyst may query both datasets of ag-2026-001, each with its own measures."""
    listing = engine.query(LISTING_RULE, listing_input(HEALTH_ANALYST))
    assert [(e["agreement_id"], e["dataset"]) for e in listing] == [
        (AGREEMENT, "ed_visits"),
        (AGREEMENT, "police_incidents"),
    ]
    by_dataset = {e["dataset"]: e for e in listing}
    assert "sum:length_of_stay_hours" in by_dataset["ed_visits"]["measures"]
    assert "sum:length_of_stay_hours" not in by_dataset["police_incidents"]["measures"]
    assert by_dataset["ed_visits"]["k"] == 10


def test_listing_shows_the_police_analyst_nothing(engine: EmbeddedEngine) -> None:
    """metro-police receives under no agreement, so its analyst's listing is empty (not an error)."""
    assert engine.query(LISTING_RULE, listing_input(POLICE_ANALYST)) == []


def test_ingest_and_audit_rules_decide(engine: EmbeddedEngine) -> None:
    """The ingest and audit decisions are reachable through the same engine."""
    agent = {"agency": "health", "role": "agent", "name": "ed", "id": "spiffe://t/agency/health/agent/ed"}
    ingest = {
        "principal": agent,
        "action": "ingest",
        "request": {"dataset": "ed_visits", "contract_version": 1},
    }
    assert engine.decide(INGEST_RULE, {**ingest, "now": NOW}).allow is True
    audit = {"principal": HEALTH_ANALYST, "action": "audit.list", "request": {}, "now": NOW}
    denied = engine.decide(AUDIT_RULE, audit)
    assert denied.allow is False
    assert "role 'analyst' may not read the access log; only auditors may" in denied.reasons


# --- fail closed ------------------------------------------------------------------------------


def one_rule_bundle(tmp_path: Path, decision_source: str) -> EmbeddedEngine:
    root = tmp_path / "bundle"
    write_module(
        root, "datashare/query.rego", f"package datashare.query\n\nimport rego.v1\n\n{decision_source}\n"
    )
    return engine_for(root, require=(QUERY_RULE,))


@pytest.mark.parametrize(
    ("source", "inp"),
    [
        pytest.param(
            'decision := {"allow": true, "share": 100 / count(input.request.measures)}',
            query_input(measures=[]),
            id="division-by-zero",
        ),
        pytest.param(
            'decision := {"allow": startswith(input.request.dataset, "ed_")}',
            query_input(dataset=12345),
            id="type-error-on-input",
        ),
    ],
)
def test_a_decision_that_errors_at_runtime_denies_with_error(
    tmp_path: Path, source: str, inp: dict[str, Any]
) -> None:
    """An engine error while evaluating is a deny with error set, naming the module line, and no
    value from the input in the error text."""
    decision = one_rule_bundle(tmp_path, source).decide(QUERY_RULE, inp)
    assert decision.allow is False
    assert decision.reasons == ("policy engine error",)
    assert decision.error is not None
    assert "datashare/query.rego:5:" in decision.error
    assert "12345" not in decision.error


def test_an_undefined_decision_denies_with_error(tmp_path: Path) -> None:
    """A decision rule that is undefined for the input is a deny with error, never an allow."""
    engine = one_rule_bundle(tmp_path, 'decision := {"allow": true} if input.request.nothing_sets_this')
    decision = engine.decide(QUERY_RULE, query_input())
    assert decision.allow is False
    assert decision.error == "policy result is undefined"


@pytest.mark.parametrize(
    "source",
    [
        pytest.param('decision := {"allow": "yes"}', id="allow-not-boolean"),
        pytest.param("decision := [true]", id="not-an-object"),
        pytest.param('decision := {"allow": true, "reasons": "none"}', id="reasons-not-a-list"),
        pytest.param('decision := {"allow": true, "reasons": ["k too small"]}', id="allow-with-reasons"),
    ],
)
def test_a_malformed_decision_denies_with_error(tmp_path: Path, source: str) -> None:
    """Anything but an object with a boolean allow (and a list of reasons) is a deny with error."""
    decision = one_rule_bundle(tmp_path, source).decide(QUERY_RULE, query_input())
    assert decision.allow is False
    assert decision.error is not None


def test_an_unknown_rule_path_denies_with_error(engine: EmbeddedEngine) -> None:
    """Asking for a rule the bundle does not define is a deny with error."""
    decision = engine.decide("datashare/query/no_such_rule", query_input())
    assert decision.allow is False
    assert decision.error is not None


def test_input_that_is_not_json_denies_with_error_naming_where(engine: EmbeddedEngine) -> None:
    """A Python object the engine cannot take is refused before evaluation, naming the field."""
    decision = engine.decide(QUERY_RULE, {**query_input(), "now": object()})
    assert decision.allow is False
    assert decision.error == "input.now: holds a Python object, which is not JSON data"


def test_query_raises_policy_engine_error_on_failure(tmp_path: Path) -> None:
    """query() has no deny to fall back on, so an undefined or failing rule raises PolicyEngineError."""
    engine = one_rule_bundle(tmp_path, "decision := 1 / count(input.xs)\n\nnothing := 1 if input.never")
    with pytest.raises(PolicyEngineError, match="divide by zero"):
        engine.query("datashare/query/decision", {"xs": []})
    with pytest.raises(PolicyEngineError, match="undefined"):
        engine.query("datashare/query/nothing", {})


# --- construction -----------------------------------------------------------------------------


def test_a_module_that_does_not_compile_is_a_config_error_naming_file_and_line(tmp_path: Path) -> None:
    """from_bundle refuses a bundle whose module does not parse, naming file:line."""
    root = copy_bundle(tmp_path)
    write_module(root, "datashare/extra.rego", "package datashare.extra\n\nimport rego.v1\n\nx := \n")
    with pytest.raises(ConfigError, match=r"datashare/extra\.rego:6:"):
        engine_for(root)


def test_a_call_to_an_unknown_function_is_a_config_error(tmp_path: Path) -> None:
    """regorus would only fail the call when first evaluated; from_bundle refuses it up front."""
    root = copy_bundle(tmp_path)
    write_module(
        root,
        "datashare/extra.rego",
        "package datashare.extra\n\nimport rego.v1\n\nx := time.parse_rfc3339(input.t)\n",
    )
    with pytest.raises(
        ConfigError, match=r"datashare/extra\.rego:5:\d+: unknown function time\.parse_rfc3339"
    ):
        engine_for(root)


def test_a_bundle_without_a_gateway_rule_is_a_config_error(tmp_path: Path) -> None:
    """The gateway's four rules must exist; from_bundle names the missing one."""
    root = copy_bundle(tmp_path)
    (root / "datashare" / "listing.rego").unlink()
    (root / "datashare" / "listing_test.rego").unlink()
    with pytest.raises(ConfigError, match="datashare/listing/datasets"):
        engine_for(root)


def test_an_unquoted_date_in_the_data_is_a_config_error_naming_it(tmp_path: Path) -> None:
    """Data the engine cannot take is refused, naming the data path and how to fix it."""
    root = copy_bundle(tmp_path)
    path = root / "agreements" / "data.yaml"
    path.write_text(path.read_text().replace('valid_from: "2026-01-01"', "valid_from: 2026-01-01"))
    with pytest.raises(ConfigError, match=r"data\.agreements\.ag-2026-001\.valid_from: .*quote it"):
        engine_for(root)


def test_make_engine_builds_embedded_and_refuses_the_rest(shipped_bundle: Any) -> None:
    """'embedded' gives an engine stamped with the bundle revision; engines other than it and 'opa' are ConfigErrors."""
    assert make_engine("embedded", shipped_bundle).revision == shipped_bundle.revision
    with pytest.raises(ConfigError, match=r"policy\.engine"):
        make_engine("rego-cpp", shipped_bundle)


# --- threads ----------------------------------------------------------------------------------


def test_decisions_from_four_threads_are_all_correct(engine: EmbeddedEngine) -> None:
    """4 threads x 500 decisions, alternating allow and deny inputs, all decide correctly."""
    allowed = query_input()
    denied = query_input(POLICE_ANALYST)
    start = threading.Barrier(4)

    def work(worker: int) -> list[bool]:
        start.wait()
        results = []
        for i in range(500):
            expect_allow = (i + worker) % 2 == 0
            decision = engine.decide(QUERY_RULE, allowed if expect_allow else denied)
            results.append(decision.allow == expect_allow and decision.error is None)
        return results

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = [ok for results in pool.map(work, range(4)) for ok in results]
    assert len(outcomes) == 2000
    assert all(outcomes)


def allows_a_valid_query(engine: EmbeddedEngine, _: int) -> bool:
    return engine.decide(QUERY_RULE, query_input()).allow


def test_an_engine_dropped_while_its_threads_live_is_released_by_them(shipped_bundle: Any) -> None:
    """A retired engine's per-thread copies are dropped by their own threads: regorus engines may
    not be dropped on another thread, which pytest would report as an unraisable error."""
    first = EmbeddedEngine.from_bundle(shipped_bundle)
    second = EmbeddedEngine.from_bundle(shipped_bundle)
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert all(pool.map(functools.partial(allows_a_valid_query, first), range(8)))
        del first
        gc.collect()
        assert all(pool.map(functools.partial(allows_a_valid_query, second), range(8)))
    assert allows_a_valid_query(second, 0)
