"""The decision log over the wire: every decision is there, and tampering shows."""

from __future__ import annotations

import itertools

import grpc
import pytest
from e2e_harness import Running, ed_rows, seal, subjects_query

from agents._pb import query_pb2
from gateway._pb import audit_pb2


def _activity(running: Running) -> None:
    running.ingest("agent:health").PushBatch(seal(running.layout, "health", "ed_visits", ed_rows("D01", 20)))
    q = running.query("health-analyst")
    q.Aggregate(
        query_pb2.AggregateRequest(
            agreement_id="ag-2026-001",
            purpose="overdose-prevention",
            dataset="ed_visits",
            measures=[query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUBJECTS)],
            group_by=["district"],
        )
    )
    with pytest.raises(grpc.RpcError):
        running.query("police-analyst").Aggregate(
            query_pb2.AggregateRequest(
                agreement_id="ag-2026-001",
                purpose="overdose-prevention",
                dataset="ed_visits",
                measures=[query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUBJECTS)],
            )
        )


def test_every_decision_allowed_or_denied_is_logged(running: Running) -> None:
    """An ingest, an allowed query and a refused query each leave an entry with their outcome."""
    _activity(running)
    decisions = list(running.audit().ListDecisions(audit_pb2.ListDecisionsRequest()))
    seen = {(d.action, d.outcome, d.agency) for d in decisions}
    assert {
        ("ingest", "allow", "health"),
        ("query", "allow", "health"),
        ("query", "deny", "metro-police"),
    } <= seen
    allowed = next(d for d in decisions if d.action == "query" and d.outcome == "allow")
    assert (
        allowed.policy_revision
        and allowed.query_fingerprint
        and allowed.cells_released + allowed.cells_withheld == 20
    )


def test_chain_verifies_after_normal_use(running: Running) -> None:
    """After ordinary traffic the auditor's verification reports an intact chain."""
    _activity(running)
    report = running.audit().VerifyLog(audit_pb2.VerifyLogRequest())
    assert report.ok and report.entries_checked >= 3 and report.first_bad_seq == 0


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE audit_log SET outcome = 'allow' WHERE seq = 3",  # hide a denial
        "DELETE FROM audit_log WHERE seq = 2",
        "UPDATE audit_log SET seq = seq + 100 WHERE seq = 2",
    ],
    ids=["edited", "deleted", "reordered"],
)
def test_tampered_log_is_detected_and_the_entry_named(running: Running, tamper: str) -> None:
    """Editing, deleting or moving an entry makes verification fail at that point in the chain."""
    _activity(running)
    running.sql(tamper)
    report = running.audit().VerifyLog(audit_pb2.VerifyLogRequest())
    assert not report.ok
    assert report.first_bad_seq in (2, 3)
    assert report.problem


def test_export_is_json_lines_in_opa_decision_log_shape(running: Running) -> None:
    """Export streams one JSON object per decision, with OPA's decision-log fields and the chain hashes."""
    import json

    _activity(running)
    lines = [json.loads(c.json_line) for c in running.audit().ExportLog(audit_pb2.ExportLogRequest())]
    assert lines and all(
        {"decision_id", "timestamp", "input", "result", "bundles", "hash", "prev_hash"} <= set(x)
        for x in lines
    )
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(lines))


_REFUSE_AUDIT_INSERTS = {
    "sqlite": [
        "CREATE TRIGGER no_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit disk full'); END",
    ],
    "postgresql": [
        "CREATE FUNCTION no_audit() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit disk full'; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER no_audit BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION no_audit()",
    ],
}


def test_failing_audit_write_releases_nothing(running: Running) -> None:
    """When the audit entry cannot be written, the query is answered UNAVAILABLE and no figure leaves."""
    running.ingest("agent:health").PushBatch(seal(running.layout, "health", "ed_visits", ed_rows("D01", 40)))
    for statement in _REFUSE_AUDIT_INSERTS[running.backend]:
        running.sql(statement)
    with pytest.raises(grpc.RpcError) as err:
        running.query("health-analyst").Aggregate(subjects_query())
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "40" not in err.value.details()
