"""Hostile bytes over real gRPC with mutual TLS: oversized messages, bytes that do not parse
(deeply nested unknown groups, bad UTF-8, truncation, garbage), wrong wire types, unknown enum
numbers and empty messages each get one plain status naming the part at fault and nothing else:
no traceback text, none of the submitted bytes, nothing stored, and an audit entry wherever the
caller could be identified."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from e2e_harness import Running, _Serve, ed_rows, seal, subjects_query
from fuzz_requests import REQUESTS
from fuzz_strategies import examples, varint
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents._pb import ingest_pb2, query_pb2
from gateway._pb import audit_pb2
from gateway._settings import GatewaySettings
from gateway.pki import PkiLayout

AGGREGATE = "/datashare.v1.Query/Aggregate"
LIST_DATASETS = "/datashare.v1.Query/ListDatasets"
PUSH = "/datashare.v1.Ingest/PushBatch"
GET_CONTRACT = "/datashare.v1.Ingest/GetContract"
LIST_DECISIONS = "/datashare.v1.Audit/ListDecisions"
CALLER = {AGGREGATE: "health-analyst", LIST_DATASETS: "health-analyst", PUSH: "agent:health",
          GET_CONTRACT: "agent:health", LIST_DECISIONS: "auditor"}  # fmt: skip
STREAMING = {LIST_DECISIONS}


def raw_call(running: Running, method: str, payload: bytes) -> grpc.RpcError | None:
    """Send ``payload`` as the request body of ``method`` as is; the error, or None on success."""
    channel = running.channel(CALLER[method])
    try:
        if method in STREAMING:
            list(channel.unary_stream(method)(payload, timeout=20))
        else:
            channel.unary_unary(method)(payload, timeout=20)
    except grpc.RpcError as error:
        return error
    finally:
        channel.close()
    return None


def decisions(running: Running) -> list[audit_pb2.Decision]:
    """The audit log, less the auditor's own reads of it (each of which is audited too)."""
    listed = running.audit().ListDecisions(audit_pb2.ListDecisionsRequest())
    return [d for d in listed if not d.action.startswith("audit.")]


def assert_plain(error: grpc.RpcError | None, code: grpc.StatusCode, field: str) -> str:
    """The call failed with ``code`` and a one-line message that starts with ``field``."""
    assert error is not None
    assert error.code() == code, error.details()
    details = error.details() or ""
    assert details.startswith(f"{field}: "), details
    assert "Traceback" not in details and "\n" not in details and "Exception" not in details
    return details


@pytest.fixture
def quiet(running: Running) -> Iterator[Running]:
    """The running gateway, with its store and audit chain checked unchanged-but-for-denials after."""
    rows = running.stored_rows("ed_visits")
    yield running
    assert running.stored_rows("ed_visits") == rows
    report = running.audit().VerifyLog(audit_pb2.VerifyLogRequest())
    assert report.ok


def _nested_groups(depth: int) -> bytes:
    """Unknown field 9 as a group holding itself ``depth`` times: parsing it recurses."""
    return bytes([9 << 3 | 3]) * depth + bytes([9 << 3 | 4]) * depth


UNDECODABLE = {
    "deeply nested unknown groups": _nested_groups(100_000),
    "bad UTF-8 in a string field": b"\x0a\x02\xff\xfe",
    "a length running past the end": b"\x0a\x7fshort",
    "an unclosed group": bytes([9 << 3 | 3]),
    "a truncated varint": b"\x08\xff\xff",
    "field number zero": b"\x00\x01",
}


@pytest.mark.parametrize(
    ("method", "payload"),
    [
        # every way of not parsing against one method; one way against each of the others (one
        # interceptor wraps them all, unary and streaming alike)
        *(pytest.param(AGGREGATE, payload, id=f"Aggregate-{name}") for name, payload in UNDECODABLE.items()),
        *(
            pytest.param(method, UNDECODABLE["deeply nested unknown groups"], id=method.rsplit("/", 1)[1])
            for method in (PUSH, GET_CONTRACT, LIST_DECISIONS)
        ),
    ],
)
def test_bytes_that_do_not_parse_are_invalid_argument_naming_the_request(
    quiet: Running, method: str, payload: bytes
) -> None:
    """A body that is not a serialised request is INVALID_ARGUMENT 'request: ...' and audited as a deny."""
    before = len(decisions(quiet))
    details = assert_plain(raw_call(quiet, method, payload), grpc.StatusCode.INVALID_ARGUMENT, "request")
    assert "datashare.v1." in details
    after = decisions(quiet)
    refused = [d for d in after[before:] if d.action == method]
    assert [(d.outcome, d.reasons[0]) for d in refused] == [("deny", details)]


def test_wrong_wire_types_read_as_unknown_fields_and_the_field_is_named(quiet: Running) -> None:
    """agreement_id sent as a varint and measures as a fixed64 are unknown fields: the request
    is then missing agreement_id, and that is the field named."""
    payload = b"\x08\x05" + b"\x21" + bytes(8)  # field 1 varint, field 4 fixed64
    assert_plain(raw_call(quiet, AGGREGATE, payload), grpc.StatusCode.INVALID_ARGUMENT, "agreement_id")


def test_an_unknown_measure_kind_is_named(quiet: Running) -> None:
    """An enum number the schema does not define is INVALID_ARGUMENT naming measures[0].kind."""
    request = subjects_query()
    request.measures[0].kind = 77  # type: ignore[assignment]
    with pytest.raises(grpc.RpcError) as caught:
        quiet.query("health-analyst").Aggregate(request)
    assert_plain(caught.value, grpc.StatusCode.INVALID_ARGUMENT, "measures[0].kind")
    assert "77" not in (caught.value.details() or "")


@pytest.mark.parametrize(
    ("method", "field"),
    [(AGGREGATE, "agreement_id"), (PUSH, "header.agency"), (GET_CONTRACT, "dataset")],
)
def test_an_empty_message_names_its_first_required_field(quiet: Running, method: str, field: str) -> None:
    """Zero bytes (every field unset) is INVALID_ARGUMENT naming the first required field."""
    assert_plain(raw_call(quiet, method, b""), grpc.StatusCode.INVALID_ARGUMENT, field)


def test_huge_repeated_fields_are_refused_by_name(quiet: Running) -> None:
    """Thirty thousand group_by entries and filters are INVALID_ARGUMENT naming group_by, quickly."""
    request = subjects_query(group_by=["district"] * 30_000)
    request.filters.extend(query_pb2.ValueFilter(dimension="sex", values=["F"] * 10) for _ in range(30_000))
    with pytest.raises(grpc.RpcError) as caught:
        quiet.query("health-analyst").Aggregate(request, timeout=20)
    assert_plain(caught.value, grpc.StatusCode.INVALID_ARGUMENT, "group_by")


def test_a_batch_replayed_under_another_agency_is_refused(quiet: Running) -> None:
    """Health's valid batch pushed by the police agent is PERMISSION_DENIED naming header.agency."""
    batch = seal(quiet.layout, "health", "ed_visits", ed_rows("D01", 20))
    with pytest.raises(grpc.RpcError) as caught:
        quiet.ingest("agent:metro-police").PushBatch(batch)
    assert_plain(caught.value, grpc.StatusCode.PERMISSION_DENIED, "header.agency")


@pytest.mark.fuzz
@settings(
    max_examples=examples(0.25),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(method=st.sampled_from(sorted(CALLER)), payload=st.binary(max_size=300))
def test_random_bytes_to_any_method_get_a_plain_answer(quiet: Running, method: str, payload: bytes) -> None:
    """Random bytes to any method are answered OK or refused with a client-side status in one
    line that repeats none of the bytes as text; never INTERNAL or UNKNOWN."""
    error = raw_call(quiet, method, payload)
    if error is None:
        return
    assert error.code() in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
    ), error.details()
    details = error.details() or ""
    assert "Traceback" not in details and "\n" not in details
    printable = [run for run in payload.decode("latin-1").split() if len(run) >= 6 and run.isalnum()]
    assert not any(run in details for run in printable)


@pytest.fixture
def seeded(running: Running) -> Running:
    """The running gateway holding 30 ED visits, so allowed queries reach SQL and disclosure."""
    running.ingest("agent:health").PushBatch(seal(running.layout, "health", "ed_visits", ed_rows("D01", 30)))
    return running


@pytest.mark.fuzz
@settings(
    max_examples=examples(0.3),
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(request=REQUESTS)
def test_any_aggregate_request_is_answered_or_refused_in_one_plain_line(
    seeded: Running, request: query_pb2.AggregateRequest
) -> None:
    """A hostile AggregateRequest (the validator fuzzer's) through identity, validation, policy,
    SQL and disclosure is answered, or refused INVALID_ARGUMENT or PERMISSION_DENIED in one
    line; never INTERNAL or UNAVAILABLE."""
    try:
        seeded.query("health-analyst").Aggregate(request, timeout=30)
    except grpc.RpcError as caught:
        error: grpc.RpcError | None = caught
    else:
        error = None
    if error is not None:
        assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)
        assert "\n" not in (error.details() or "")
    assert seeded.stored_rows("ed_visits") == 30


# --- oversized messages -----------------------------------------------------------------------


@pytest.fixture
def small_limit(pki: PkiLayout, tmp_path: Path) -> Iterator[Running]:
    """A gateway whose [gateway] max_message_mb is 1, on SQLite."""
    settings_ = dataclasses.replace(GatewaySettings.from_file(pki.gateway_config), max_message_mb=1)
    with _Serve(settings_, f"sqlite:///{tmp_path / 'gateway.db'}", pki) as running:
        yield running


@pytest.mark.parametrize("method", [AGGREGATE, PUSH])
def test_a_message_over_the_limit_is_resource_exhausted_and_changes_nothing(
    small_limit: Running, method: str
) -> None:
    """A request body over max_message_mb is RESOURCE_EXHAUSTED before any handler runs: nothing
    is stored, and (no caller was identified) the audit log is unchanged."""
    before = decisions(small_limit)
    error = raw_call(small_limit, method, b"\x0a" + varint(1_200_000) + b"a" * 1_200_000)
    assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Traceback" not in (error.details() or "")
    assert small_limit.stored_rows("ed_visits") == 0
    assert len(decisions(small_limit)) == len(before)


def test_a_batch_just_under_the_limit_is_stored(small_limit: Running) -> None:
    """The limit refuses only what is over it: a real batch of over 0.8 MB is stored."""
    batch = seal(small_limit.layout, "health", "ed_visits", ed_rows("D01", 19_000))
    assert 0.8e6 < batch.ByteSize() < 1024 * 1024
    ack = small_limit.ingest("agent:health").PushBatch(batch)
    assert ack.records_stored == 19_000


# --- names with control characters (found by hand after the fuzzers: NUL broke the audit write) --

CONTROL_IN_A_NAME = [
    pytest.param(
        GET_CONTRACT, ingest_pb2.GetContractRequest(dataset="ed_visits\x00x"), "dataset", id="contract-NUL"
    ),
    pytest.param(
        GET_CONTRACT, ingest_pb2.GetContractRequest(dataset="ed_visits\nx"), "dataset", id="contract-LF"
    ),
    pytest.param(
        LIST_DECISIONS, audit_pb2.ListDecisionsRequest(principal="spiffe://a\x00"), "principal", id="list-NUL"
    ),
    pytest.param(
        LIST_DECISIONS, audit_pb2.ListDecisionsRequest(since="2026-01-01\x00"), "since", id="since-NUL"
    ),
    pytest.param(
        LIST_DECISIONS, audit_pb2.ListDecisionsRequest(agency="health\r\n"), "agency", id="agency-CRLF"
    ),
]


@pytest.mark.parametrize(("method", "request_", "field"), CONTROL_IN_A_NAME)
def test_a_control_character_in_a_name_is_invalid_argument_not_an_audit_failure(
    quiet: Running, method: str, request_: Message, field: str
) -> None:
    """A NUL or line break in a name the gateway would log is INVALID_ARGUMENT naming the field,
    not UNAVAILABLE from an audit write the database refused; the refusal itself is audited."""

    def denials() -> list[str]:
        listed = quiet.audit().ListDecisions(audit_pb2.ListDecisionsRequest(outcome="deny"))
        return [d.reasons[0] for d in listed]

    before = denials()
    details = assert_plain(
        raw_call(quiet, method, request_.SerializeToString()), grpc.StatusCode.INVALID_ARGUMENT, field
    )
    assert denials() == [*before, details]
