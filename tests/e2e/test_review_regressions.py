"""Audit completeness and isolation cases found in review: every path leaves a trace, no path leaks."""

from __future__ import annotations

import grpc
import pytest
from e2e_harness import Row, Running, day, ed_rows, seal, subjects_query

from agents._pb import ingest_pb2
from gateway._pb import audit_pb2


def _decisions(running: Running, **filters: str) -> list[audit_pb2.Decision]:
    return list(running.audit().ListDecisions(audit_pb2.ListDecisionsRequest(**filters)))


def test_batch_that_fails_to_store_is_still_in_the_log_and_not_stored(running: Running) -> None:
    """A verified batch whose insert fails is logged as authorised and then as a failed store; no row is kept."""
    if running.backend == "sqlite":
        running.sql(
            "CREATE TRIGGER no_rows BEFORE INSERT ON ds_ed_visits BEGIN SELECT RAISE(ABORT, 'disk'); END",
        )
    else:
        running.sql(
            "CREATE FUNCTION no_rows() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER no_rows BEFORE INSERT ON ds_ed_visits FOR EACH ROW EXECUTE FUNCTION no_rows()",
        )
    with pytest.raises(grpc.RpcError) as err:
        running.ingest("agent:health").PushBatch(
            seal(running.layout, "health", "ed_visits", ed_rows("D01", 20))
        )
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    actions = [(d.action, d.outcome) for d in _decisions(running, agency="health")]
    assert ("ingest", "allow") in actions
    assert ("ingest.store", "error") in actions
    assert running.stored_rows("ed_visits") == 0


def test_query_that_fails_in_the_database_is_logged_as_an_error(running: Running) -> None:
    """An allowed query whose SQL fails leaves an 'error' entry and releases nothing."""
    running.sql("DROP TABLE ds_ed_visits")
    with pytest.raises(grpc.RpcError) as err:
        running.query("health-analyst").Aggregate(subjects_query())
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert [d.outcome for d in _decisions(running, agency="health") if d.action == "query"] == ["error"]


def test_unreadable_header_is_refused_and_logged(running: Running) -> None:
    """A batch whose header is not a BatchHeader is INVALID_ARGUMENT on 'header' and leaves a deny entry."""
    batch = seal(running.layout, "health", "ed_visits", ed_rows("D01", 20))
    batch.header = b"\xff\xff\xff not protobuf"
    with pytest.raises(grpc.RpcError) as err:
        running.ingest("agent:health").PushBatch(batch)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("header")
    assert [(d.action, d.outcome) for d in _decisions(running, agency="health")] == [("ingest", "deny")]


def test_batch_ids_are_per_agency(running: Running) -> None:
    """Another agency using the same batch id neither blocks nor learns of the first agency's batch."""
    police = [
        Row(
            f"p{i}",
            day("2025-01-05"),
            {"district": "D01", "age_band": "25-34", "sex": "M", "incident_type": "drugs"},
        )
        for i in range(15)
    ]
    first = running.ingest("agent:metro-police").PushBatch(
        seal(running.layout, "metro-police", "police_incidents", police, batch_id="same-id")
    )
    second = running.ingest("agent:health").PushBatch(
        seal(running.layout, "health", "ed_visits", ed_rows("D01", 15), batch_id="same-id")
    )
    assert first.status == second.status == ingest_pb2.PushAck.STATUS_STORED
