"""The OPA-server engine over real HTTP, against an endpoint that evaluates with real OPA's engine:
it decides as the embedded engine does, pushes and reloads bundles, and denies whenever the
server is down, slow, wrong or out of step."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opa_rest_server import OpaRestServer
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
    UNAVAILABLE_REASON,
    Bundle,
    EmbeddedEngine,
    OpaServerEngine,
    PolicyDecision,
    load_bundle,
    make_engine,
)

AGENT = {"agency": "health", "role": "agent", "name": "ed", "id": "spiffe://t/agency/health/agent/ed"}
AUDITOR = {"agency": "health", "role": "auditor", "name": "aud", "id": "spiffe://t/agency/health/auditor/aud"}


def ingest_input(principal: dict[str, str] = AGENT, **request: Any) -> dict[str, Any]:
    return {
        "principal": principal,
        "action": "ingest",
        "request": {"dataset": "ed_visits", "contract_version": 1, **request},
        "now": NOW,
    }


def audit_input(principal: dict[str, str]) -> dict[str, Any]:
    return {"principal": principal, "action": "audit.list", "request": {}, "now": NOW}


DECISIONS = [
    (QUERY_RULE, query_input()),
    (QUERY_RULE, query_input(purpose="marketing")),
    (QUERY_RULE, query_input(now="2031-01-01T00:00:00Z")),
    (QUERY_RULE, query_input(group_by=["district", "age_band", "sex", "month"])),
    (QUERY_RULE, query_input(link=POLICE_LINK)),
    (QUERY_RULE, query_input(link={**POLICE_LINK, "days_before": 400})),
    (QUERY_RULE, query_input(principal=POLICE_ANALYST)),
    (INGEST_RULE, ingest_input()),
    (INGEST_RULE, ingest_input(dataset="police_incidents")),
    (INGEST_RULE, ingest_input(contract_version=99)),
    (AUDIT_RULE, audit_input(AUDITOR)),
    (AUDIT_RULE, audit_input(HEALTH_ANALYST)),
]


@pytest.fixture
def opa() -> Iterator[OpaRestServer]:
    with OpaRestServer().serve() as server:
        yield server


@pytest.fixture
def opa_engine(opa: OpaRestServer, shipped_bundle: Bundle) -> OpaServerEngine:
    return OpaServerEngine.from_bundle(shipped_bundle, opa_url=opa.url, timeout_ms=300)


@pytest.fixture(scope="module")
def shared_opa_engine(shipped_bundle: Bundle) -> Iterator[OpaServerEngine]:
    with OpaRestServer().serve() as server:
        yield OpaServerEngine.from_bundle(shipped_bundle, opa_url=server.url, timeout_ms=2000)


def assert_unavailable(decision: PolicyDecision, failure: str) -> None:
    assert (decision.allow, decision.reasons, decision.failure) == (False, (UNAVAILABLE_REASON,), failure)
    assert decision.error


# --- deciding like the embedded engine --------------------------------------------------------


@pytest.mark.parametrize(("path", "input_doc"), DECISIONS, ids=lambda v: v if isinstance(v, str) else "")
def test_decision_through_the_server_equals_the_embedded_one(
    shared_opa_engine: OpaServerEngine, engine: EmbeddedEngine, path: str, input_doc: dict[str, Any]
) -> None:
    """For the shipped bundle, the decision OPA makes over HTTP equals the embedded engine's, revision included."""
    assert shared_opa_engine.decide(path, input_doc) == engine.decide(path, input_doc)


def test_the_inputs_compared_include_allows_and_denies(engine: EmbeddedEngine) -> None:
    """The comparison above is not vacuous: the shipped bundle allows some of its inputs and denies others."""
    outcomes = {engine.decide(path, doc).allow for path, doc in DECISIONS}
    assert outcomes == {True, False}


def test_listing_through_the_server_equals_the_embedded_one(
    shared_opa_engine: OpaServerEngine, engine: EmbeddedEngine
) -> None:
    """The dataset listing OPA returns equals the embedded engine's, for an analyst who sees some and one who sees none."""
    for principal in (HEALTH_ANALYST, POLICE_ANALYST):
        doc = listing_input(principal)
        assert shared_opa_engine.query(LISTING_RULE, doc) == engine.query(LISTING_RULE, doc)


def test_engine_is_stamped_with_the_embedded_revision(
    shared_opa_engine: OpaServerEngine, shipped_bundle: Bundle
) -> None:
    """The OPA engine's revision is the one load_bundle computes, as the embedded engine's is."""
    assert shared_opa_engine.revision == shipped_bundle.revision
    assert shared_opa_engine.decide(QUERY_RULE, query_input()).revision == shipped_bundle.revision


def test_make_engine_opa_pushes_the_bundle_to_the_server(opa: OpaRestServer, shipped_bundle: Bundle) -> None:
    """make_engine('opa') puts every decision module (no tests) and every data document on the server."""
    make_engine("opa", shipped_bundle, opa_url=opa.url, timeout_ms=300)
    assert sorted(opa.modules) == sorted(f"datashare-gateway/{rel}" for rel in shipped_bundle.policy_modules)
    assert opa.data == dict(shipped_bundle.data)


# --- fail closed ------------------------------------------------------------------------------


def test_server_down_denies(opa: OpaRestServer, opa_engine: OpaServerEngine) -> None:
    """With nobody listening any more, a decision is a deny saying the policy engine is unavailable."""
    opa.stop()
    assert_unavailable(opa_engine.decide(QUERY_RULE, query_input()), "unreachable")


def test_slow_server_denies_within_the_timeout(opa: OpaRestServer, opa_engine: OpaServerEngine) -> None:
    """A server that takes 5 s to answer is given up on after timeout_ms (300 ms), and the request denied."""
    opa.delay_s = 5.0
    started = time.monotonic()
    decision = opa_engine.decide(QUERY_RULE, query_input())
    elapsed = time.monotonic() - started
    assert_unavailable(decision, "timeout")
    assert 0.25 < elapsed < 1.0


@pytest.mark.parametrize(
    ("reply", "failure"),
    [
        ((200, b"<html>proxy error</html>"), "bad_response"),
        ((200, b"[1, 2]"), "bad_response"),
        ((200, b"{}"), "undefined"),
        ((200, b'{"result": "allow"}'), "malformed_result"),
        ((200, b'{"result": {"allow": "yes", "reasons": []}}'), "malformed_result"),
        ((200, b'{"result": {"allow": true, "reasons": ["but no"]}}'), "malformed_result"),
        ((500, b'{"code": "internal_error", "message": "eval_conflict_error"}'), "http_status"),
        ((404, b""), "http_status"),
    ],
)
def test_garbage_or_undefined_answers_deny(
    opa: OpaRestServer, opa_engine: OpaServerEngine, reply: tuple[int, bytes], failure: str
) -> None:
    """Whatever the server answers that is not a well-formed decision, the request is denied and the failure named."""
    opa.reply = reply
    assert_unavailable(opa_engine.decide(QUERY_RULE, query_input()), failure)


def test_listing_fails_with_an_engine_error_when_the_server_cannot_answer(
    opa: OpaRestServer, opa_engine: OpaServerEngine
) -> None:
    """A listing the server cannot give raises PolicyEngineError (never an empty, or a stale, listing)."""
    opa.reply = (503, b"")
    with pytest.raises(PolicyEngineError, match="HTTP 503"):
        opa_engine.query(LISTING_RULE, listing_input(HEALTH_ANALYST))


def test_input_that_is_not_json_denies_without_asking(
    opa: OpaRestServer, opa_engine: OpaServerEngine
) -> None:
    """An input holding a Python object denies as bad input, naming where it sits, and nothing is sent."""
    decision = opa_engine.decide(QUERY_RULE, {**query_input(), "now": object()})
    assert_unavailable(decision, "bad_input")
    assert "input.now" in (decision.error or "")
    assert opa.decisions == []


def test_failures_are_logged_without_input_values(
    opa: OpaRestServer, opa_engine: OpaServerEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed decision is logged with its failure kind, and nothing of the input appears in the log."""
    opa.reply = (500, b'{"message": "object insert conflict: ann"}')
    opa_engine.decide(QUERY_RULE, query_input())
    logged = capsys.readouterr()
    text = logged.out + logged.err
    assert "policy_engine_failed" in text
    assert "http_status" in text
    assert "ann" not in text
    assert "overdose" not in text


# --- pushing, reloading, refusing -------------------------------------------------------------


def test_reload_switches_every_decision_to_the_new_revision(
    opa: OpaRestServer, opa_engine: OpaServerEngine, tmp_path: Path
) -> None:
    """After a reload that suspends the agreement, the next decision denies and carries the new revision."""
    root = copy_bundle(tmp_path)
    edit_agreement(root, status="suspended")
    bundle = load_bundle(root)
    new = opa_engine.reload(bundle)
    decision = new.decide(QUERY_RULE, query_input())
    assert decision.allow is False
    assert any("suspended" in reason for reason in decision.reasons)
    assert decision.revision == bundle.revision != opa_engine.revision
    # the engine built before the reload asks the same server, and says which revision decided
    assert opa_engine.decide(QUERY_RULE, query_input()).revision == bundle.revision


def test_bundle_with_a_broken_module_is_refused_before_the_server_sees_it(
    opa: OpaRestServer, opa_engine: OpaServerEngine, tmp_path: Path
) -> None:
    """A module that does not compile is a ConfigError naming file and line; the server keeps the old bundle."""
    root = copy_bundle(tmp_path)
    write_module(root, "datashare/extra.rego", "package datashare.extra\n\nx := {\n")
    before = dict(opa.modules)
    with pytest.raises(ConfigError, match=r"datashare/extra\.rego:\d+"):
        opa_engine.reload(load_bundle(root))
    assert opa.modules == before
    assert opa_engine.decide(QUERY_RULE, query_input()).allow is True


def test_refused_push_keeps_the_last_good_revision_serving(
    opa: OpaRestServer, opa_engine: OpaServerEngine, tmp_path: Path
) -> None:
    """When the server refuses a module of a new bundle, ConfigError names it and the old bundle serves on, whole."""
    root = copy_bundle(tmp_path)
    edit_agreement(root, status="suspended")
    query_module = root / "datashare" / "query.rego"
    query_module.write_text(query_module.read_text() + "\n# refused-by-this-test\n")
    before = (dict(opa.modules), dict(opa.data))
    opa.refuse_marker = "refused-by-this-test"
    with pytest.raises(
        ConfigError, match=r"OPA server at .*refused the policy bundle: datashare/query\.rego:1"
    ):
        opa_engine.reload(load_bundle(root))
    assert (opa.modules, opa.data) == before
    decision = opa_engine.decide(QUERY_RULE, query_input())
    assert (decision.allow, decision.revision) == (True, opa_engine.revision)


def test_server_left_unsynchronised_denies_until_the_bundle_is_back(
    opa: OpaRestServer, opa_engine: OpaServerEngine, tmp_path: Path
) -> None:
    """If neither the new bundle nor the old one can be put back, decisions deny; once the server accepts again, the old bundle returns."""
    root = copy_bundle(tmp_path)
    edit_agreement(root, status="suspended")
    opa.refuse = True
    with pytest.raises(ConfigError):
        opa_engine.reload(load_bundle(root))
    assert_unavailable(opa_engine.decide(QUERY_RULE, query_input()), "unsynchronised")
    opa.refuse = False
    deadline = time.monotonic() + 10
    while not (decision := opa_engine.decide(QUERY_RULE, query_input())).allow:
        assert time.monotonic() < deadline, "the last good bundle was not pushed again"
        time.sleep(0.05)
    assert decision.revision == opa_engine.revision


def test_server_restarted_empty_gets_the_bundle_again(
    opa: OpaRestServer, opa_engine: OpaServerEngine
) -> None:
    """If the server loses the pushed modules (an OPA restart), the first undefined answer denies and the bundle is pushed again."""
    for policy_id in list(opa.modules):
        opa.modules.pop(policy_id)
    opa.put_data(["unrelated"], {})  # recompiles the now empty set of modules
    assert_unavailable(opa_engine.decide(QUERY_RULE, query_input()), "undefined")
    deadline = time.monotonic() + 10
    while not opa_engine.decide(QUERY_RULE, query_input()).allow:
        assert time.monotonic() < deadline, "the bundle was not pushed again"
        time.sleep(0.05)


def test_bad_opa_url_and_unreachable_server_are_config_errors(shipped_bundle: Bundle) -> None:
    """A URL with a path is refused, and a server nobody answers at stops start-up with a one-line reason."""
    with pytest.raises(ConfigError, match=r"policy\.opa_url"):
        make_engine("opa", shipped_bundle, opa_url="http://127.0.0.1:8181/opa")
    with pytest.raises(ConfigError, match=r"OPA server at http://127\.0\.0\.1:1: cannot push"):
        make_engine("opa", shipped_bundle, opa_url="http://127.0.0.1:1")


def test_agreement_id_of_the_decision_comes_from_the_server(shared_opa_engine: OpaServerEngine) -> None:
    """An allow through the server carries the agreement's terms, as the audit log records them."""
    decision = shared_opa_engine.decide(QUERY_RULE, query_input())
    assert decision.agreement["id"] == AGREEMENT
    assert decision.obligations["k"] >= 10
