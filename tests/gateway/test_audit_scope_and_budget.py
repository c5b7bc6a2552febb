"""Audit access scoped per auditor, and an agreement's query budget enforced: a real gateway on
loopback (mTLS, SQLite) serving a copy of the shipped bundle, with auditors of two agencies
besides the oversight office's."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway._pb import audit_pb2, audit_pb2_grpc, query_pb2, query_pb2_grpc
from gateway._pki import _issue_client, _Issued, spiffe_id
from gateway._settings import ClientProfile, GatewaySettings
from gateway._tls import client_channel
from gateway.audit import budget_period
from gateway.pki import PkiLayout, init_dev_pki
from gateway.policy._locate import shipped_bundle_dir
from gateway.server import Gateway, build_gateway

AGREEMENT = "ag-2026-001"  # providing: metro-police, health; receiving: health
EXTRA_AUDITORS = {"health-auditor": "health", "police-auditor": "metro-police"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    """The dev PKI, plus an auditor certificate for health and one for metro-police."""
    layout = init_dev_pki(tmp_path_factory.mktemp("pki"), listen="127.0.0.1:0")
    key = serialization.load_pem_private_key(layout.ca_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    ca = _Issued(x509.load_pem_x509_certificate(layout.ca_cert.read_bytes()), key)
    for name, agency in EXTRA_AUDITORS.items():
        uri = spiffe_id("datashare.local", agency, "auditor", name)
        issued = _issue_client(ca, name, uri, dt.datetime.now(dt.UTC))
        layout.client_cert(name).write_bytes(issued.cert_pem())
        layout.client_key(name).write_bytes(issued.key_pem())
        layout.client_key(name).chmod(0o600)
    return layout


@dataclass
class Served:
    gateway: Gateway
    layout: PkiLayout

    def channel(self, name: str) -> grpc.Channel:
        profile = ClientProfile.from_file(self.layout.client_profile("auditor"))
        address = f"127.0.0.1:{self.gateway.port}"
        cert, key = self.layout.client_cert(name), self.layout.client_key(name)
        return client_channel(dataclasses.replace(profile, address=address, cert=cert, key=key))

    def query(self, name: str = "health-analyst") -> query_pb2_grpc.QueryStub:
        return query_pb2_grpc.QueryStub(self.channel(name))

    def audit(self, name: str = "auditor") -> audit_pb2_grpc.AuditStub:
        return audit_pb2_grpc.AuditStub(self.channel(name))


def _serve(layout: PkiLayout, tmp_path: Path, edit: Callable[[str], str] | None = None) -> Served:
    bundle = tmp_path / "bundle"
    shutil.copytree(shipped_bundle_dir(), bundle)
    if edit is not None:
        agreements = bundle / "agreements" / "data.yaml"
        agreements.write_text(edit(agreements.read_text()))
    settings = GatewaySettings.from_file(layout.gateway_config)
    settings = dataclasses.replace(
        settings,
        listen="127.0.0.1:0",
        store=dataclasses.replace(settings.store, url=f"sqlite:///{tmp_path / 'gateway.db'}"),
        policy=dataclasses.replace(settings.policy, bundle=bundle, reload_interval_s=0),
    )
    gateway = build_gateway(settings)
    gateway.start()
    return Served(gateway, layout)


@pytest.fixture
def served(pki: PkiLayout, tmp_path: Path) -> Iterator[Served]:
    running = _serve(pki, tmp_path)
    yield running
    running.gateway.stop(grace=0.5)


def _with_terms(terms: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert "\n  k: 10\n" in text
        return text.replace("\n  k: 10\n", f"\n  k: 10\n{terms}", 1)

    return edit


@pytest.fixture
def budgeted(pki: PkiLayout, tmp_path: Path) -> Iterator[Served]:
    """The shipped agreement with a budget of 3 queries a month."""
    running = _serve(pki, tmp_path, _with_terms("  query_budget: {queries: 3, period: month}\n"))
    yield running
    running.gateway.stop(grace=0.5)


def _query(agreement: str = AGREEMENT) -> query_pb2.AggregateRequest:
    return query_pb2.AggregateRequest(
        agreement_id=agreement,
        purpose="overdose-prevention",
        dataset="ed_visits",
        measures=[query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUBJECTS)],
        group_by=["district"],
    )


def _denied(call: Callable[[], object]) -> str:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    return refused.value.details() or ""


def _listing(served: Served, auditor: str) -> list[audit_pb2.Decision]:
    return list(served.audit(auditor).ListDecisions(audit_pb2.ListDecisionsRequest()))


def test_two_auditors_see_the_decisions_of_their_own_scope(served: Served) -> None:
    """The health auditor sees health's own requests and every decision under an agreement
    health is party to; the police auditor the same for metro-police; each misses the other's
    listings; the oversight auditor sees everything. Export returns the same entries as list."""
    served.query("health-analyst").Aggregate(_query())  # health, under the shared agreement
    served.query("health-analyst").ListDatasets(query_pb2.ListDatasetsRequest())  # health only
    served.query("police-analyst").ListDatasets(query_pb2.ListDatasetsRequest())  # police only
    _denied(lambda: served.query("health-analyst").Aggregate(_query("ag-unknown")))  # health only
    _denied(lambda: served.query("police-analyst").Aggregate(_query()))  # police, shared agreement
    health = _listing(served, "health-auditor")
    police = _listing(served, "police-auditor")
    everything = _listing(served, "auditor")

    def seen(listing: list[audit_pb2.Decision]) -> list[tuple[str, str, str]]:
        return [(d.agency, d.action, d.agreement_id) for d in listing]

    assert seen(health) == [
        ("health", "query", AGREEMENT),
        ("health", "list_datasets", ""),
        ("health", "query", "ag-unknown"),
        ("metro-police", "query", AGREEMENT),
        ("health", "audit.list", ""),
    ]
    assert seen(police) == [
        ("health", "query", AGREEMENT),
        ("metro-police", "list_datasets", ""),
        ("metro-police", "query", AGREEMENT),
        ("metro-police", "audit.list", ""),
    ]
    assert len(everything) == 8
    assert {d.seq for d in health} | {d.seq for d in police} < {d.seq for d in everything}
    exported = list(served.audit("health-auditor").ExportLog(audit_pb2.ExportLogRequest()))
    assert len(exported) == len(health) + 1  # and the health auditor's own listing before it


def test_verify_is_not_scoped(served: Served) -> None:
    """An auditor with a narrow scope still verifies the whole chain: it reveals no entry."""
    served.query("police-analyst").ListDatasets(query_pb2.ListDatasetsRequest())
    report = served.audit("health-auditor").VerifyLog(audit_pb2.VerifyLogRequest())
    assert (report.ok, report.entries_checked) == (True, 2)


def test_the_scope_is_recorded_in_the_audit_entry_of_the_listing(served: Served) -> None:
    """The auditor's scope obligation is in the result the log keeps for their listing."""
    _listing(served, "health-auditor")
    (entry,) = _listing(served, "auditor")[:1]
    assert entry.action == "audit.list"
    assert f'"agreements": ["{AGREEMENT}"]' in entry.result_json
    assert '"agencies": ["health"]' in entry.result_json


def test_a_budget_of_three_allows_three_queries_then_says_when_it_renews(budgeted: Served) -> None:
    """Three allowed queries use the monthly budget; the fourth is refused with the count, the
    month and the renewal date, and the audit log holds the same reason and the usage reported."""
    analyst = budgeted.query("health-analyst")
    for _ in range(3):
        analyst.Aggregate(_query())
    month = budget_period("month", dt.datetime.now(dt.UTC))
    reason = (
        f"agreement {AGREEMENT} has used its 3 queries for {month.label}; "
        f"the budget renews on {month.end.date().isoformat()}"
    )
    assert _denied(lambda: analyst.Aggregate(_query())) == reason
    queries = [d for d in _listing(budgeted, "auditor") if d.action == "query"]
    assert [d.outcome for d in queries] == ["allow", "allow", "allow", "deny"]
    assert list(queries[-1].reasons) == [reason]
    assert '"queries_this_period": 3' in queries[-1].input_json
    assert '"queries_this_period": 2' in queries[-2].input_json


def test_denied_queries_do_not_use_the_budget(budgeted: Served) -> None:
    """Refused queries (wrong purpose) leave the budget whole: three allowed ones still follow."""
    analyst = budgeted.query("health-analyst")
    for _ in range(2):
        _denied(lambda: analyst.Aggregate(_wrong_purpose()))
    for _ in range(3):
        analyst.Aggregate(_query())
    assert "has used its 3 queries" in _denied(lambda: analyst.Aggregate(_query()))


def _wrong_purpose() -> query_pb2.AggregateRequest:
    request = _query()
    request.purpose = "tax-collection"
    return request


def test_racing_queries_never_pass_the_budget(budgeted: Served) -> None:
    """Eight analysts' queries at once against a budget of three: exactly three answered, five
    refused with the budget reason, three allowed entries in the log."""
    analyst = budgeted.query("health-analyst")

    def ask(_: int) -> str:
        try:
            analyst.Aggregate(_query())
        except grpc.RpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
        return "answered"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(ask, range(8)))
    assert outcomes.count("answered") == 3
    refused = [o for o in outcomes if o != "answered"]
    assert all(o.startswith("PERMISSION_DENIED: ") and "has used its 3 queries" in o for o in refused)
    queries = [d for d in _listing(budgeted, "auditor") if d.action == "query"]
    assert sorted(d.outcome for d in queries) == ["allow"] * 3 + ["deny"] * 5


def test_a_query_that_lost_the_race_at_audit_time_is_refused_with_the_policy_reason(
    budgeted: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the count read before deciding is stale (another replica took the last unit since),
    the re-check under the audit lock refuses: the policy decides again on the fresh count, the
    analyst gets its reason, and the log holds a deny, not an allow."""
    analyst = budgeted.query("health-analyst")
    for _ in range(3):
        analyst.Aggregate(_query())
    store = budgeted.gateway.shared.store
    monkeypatch.setattr(store, "queries_allowed", lambda *_: 0)  # the stale read
    assert "has used its 3 queries" in _denied(lambda: analyst.Aggregate(_query()))
    last = [d for d in _listing(budgeted, "auditor") if d.action == "query"][-1]
    assert last.outcome == "deny"
    assert '"queries_this_period": 3' in last.input_json


@pytest.fixture
def expired(pki: PkiLayout, tmp_path: Path) -> Iterator[Served]:
    """The shipped agreement, ended yesterday."""
    yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()

    def edit(text: str) -> str:
        assert 'valid_until: "2028-12-31"' in text
        return text.replace('valid_until: "2028-12-31"', f'valid_until: "{yesterday}"', 1)

    running = _serve(pki, tmp_path, edit)
    yield running
    running.gateway.stop(grace=0.5)


def test_an_expired_agreement_is_refused_with_its_end_date_and_logged_the_same(expired: Served) -> None:
    """An analyst asking under an agreement that ended is told which agreement expired and when;
    the audit entry of that deny holds the same reason, word for word."""
    yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    details = _denied(lambda: expired.query("health-analyst").Aggregate(_query()))
    assert f"agreement {AGREEMENT} expired on {yesterday}" in details
    (entry,) = [d for d in _listing(expired, "auditor") if d.action == "query"]
    assert entry.outcome == "deny"
    assert f"agreement {AGREEMENT} expired on {yesterday}" in list(entry.reasons)


def test_a_forbidden_combination_is_refused_by_name_and_logged_the_same(served: Served) -> None:
    """Grouping by age band and district together, which the agreement forbids, is refused with a
    reason naming both dimensions and the agreement; the audit entry holds the same reason."""
    request = _query()
    request.group_by[:] = ["district", "age_band"]
    details = _denied(lambda: served.query("health-analyst").Aggregate(request))
    (entry,) = [d for d in _listing(served, "auditor") if d.action == "query"]
    (reason,) = [r for r in entry.reasons if "not allowed with" in r]
    assert "'age_band'" in reason and "'district'" in reason and AGREEMENT in reason
    assert reason in details
