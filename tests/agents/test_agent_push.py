"""`agent push` end to end into a real Ingest server over mutual TLS."""

from __future__ import annotations

import json
from datetime import date

import grpc
import pytest
from agent_testkit import AGENT_SPIFFE, RunningServer, Workspace, ed_row

from agents._pb import ingest_pb2
from agents.cli import main


def _days(day: date) -> int:
    return (day - date(1970, 1, 1)).days


def _rows(count: int) -> list[dict[str, str]]:
    return [
        ed_row(
            attendance_id=f"A{i}",
            patient_national_id=f"QQ{i:06d}C",
            arrival_time=f"2024-03-{1 + i % 28:02d} 10:00",
        )
        for i in range(count)
    ]


def test_push_sends_every_record_and_prints_the_summary(
    workspace: Workspace, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A clean file is pushed whole: the server opens every batch and the summary line adds up."""
    workspace.write_config(batch_size=4)
    workspace.write_rows(_rows(10))

    assert main(["push", "--config", str(workspace.config)]) == 0

    out = capsys.readouterr().out.strip()
    assert out == "read 10, sent 10, rejected 0, batches 3 (stored 3, duplicate 0)"
    assert len(server.servicer.all_records()) == 10
    assert {batch.header.record_count for batch in server.servicer.stored.values()} == {4, 2}
    header = next(iter(server.servicer.stored.values())).header
    assert (header.agency, header.dataset, header.contract_version, header.signing_key_id) == (
        "health",
        "ed_visits",
        3,
        "health-1",
    )
    assert server.servicer.peers
    assert all(peer == AGENT_SPIFFE.encode() for peer in server.servicer.peers)


def test_records_arrive_mapped_to_the_contract(workspace: Workspace, server: RunningServer) -> None:
    """Each field arrives as the contract wants: the day, the band, mapped and looked-up values, hours."""
    workspace.write_rows(
        [
            ed_row(
                date_of_birth="2006-03-15",
                arrival_time="2024-03-15 22:00",
                departure_time="2024-03-16 01:30",
                sex="U",
                home_postcode=" zx2 2bb ",
                triage_code="t02",
            )
        ]
    )

    assert main(["push", "--config", str(workspace.config), "--quiet"]) == 0

    [(token, day, dims, measures)] = server.servicer.all_records()
    assert len(token) == 32
    assert day == _days(date(2024, 3, 15))
    assert dims == {"district": "D02", "age_band": "18-24", "sex": "X", "presentation": "injury"}
    assert measures == {"length_of_stay_hours": 3.5}


def test_unmapped_columns_never_leave(workspace: Workspace, server: RunningServer) -> None:
    """Names, notes, attendance ids and raw identifiers are absent from the decrypted batch."""
    workspace.write_rows(
        [
            ed_row(
                patient_name="Wilhelmina Zarathustra",
                attendance_id="ATT-998877",
                patient_national_id="XY987654Z",
            )
        ]
    )

    assert main(["push", "--config", str(workspace.config), "--quiet"]) == 0

    [batch] = server.servicer.stored.values()
    for secret in (
        b"Wilhelmina",
        b"Zarathustra",
        b"confidential note",
        b"ATT-998877",
        b"XY987654Z",
        b"ZX1 1AA",
    ):
        assert secret not in batch.plaintext
        assert secret not in batch.header.SerializeToString()
    assert {d.name for d in batch.records.dimensions} == {"district", "age_band", "sex", "presentation"}
    assert [m.name for m in batch.records.measures] == ["length_of_stay_hours"]


def test_json_summary(
    workspace: Workspace, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json prints the same counts as one JSON object."""
    workspace.write_rows([*_rows(3), ed_row(patient_national_id="")])

    assert main(["push", "--config", str(workspace.config), "--json"]) == 0

    summary = json.loads(capsys.readouterr().out)
    assert summary == {
        "read": 4,
        "sent": 3,
        "rejected": 1,
        "batches": 1,
        "stored": 1,
        "duplicate": 0,
        "resent": 0,
        "spooled": 0,
    }


def test_quiet_prints_nothing_on_success(
    workspace: Workspace, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """--quiet is silent when the run succeeds."""
    workspace.write_rows(_rows(2))

    assert main(["push", "--config", str(workspace.config), "--quiet"]) == 0

    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "")


def test_rerun_of_an_unchanged_export_sends_nothing(
    workspace: Workspace, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The read position is kept: a second run over the same file reads and sends no record."""
    workspace.write_config(batch_size=3)
    workspace.write_rows(_rows(7))

    assert main(["push", "--config", str(workspace.config)]) == 0
    assert main(["push", "--config", str(workspace.config)]) == 0

    assert len(server.servicer.stored) == 3
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        "read 0, sent 0, rejected 0, batches 0 (stored 0, duplicate 0)"
    )


def test_from_start_sends_the_same_batch_ids_and_the_server_dedups(
    workspace: Workspace, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Batch ids are deterministic across runs, so a re-read from the start is all duplicates."""
    workspace.write_config(batch_size=3)
    workspace.write_rows(_rows(7))

    assert main(["push", "--config", str(workspace.config)]) == 0
    first_ids = list(server.servicer.stored)
    assert main(["push", "--config", str(workspace.config), "--from-start"]) == 0

    assert list(server.servicer.stored) == first_ids
    assert (
        server.servicer.statuses
        == [ingest_pb2.PushAck.STATUS_STORED] * 3 + [ingest_pb2.PushAck.STATUS_DUPLICATE] * 3
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "read 7, sent 7, rejected 0, batches 3 (stored 0, duplicate 3)"


def test_appended_rows_are_the_only_ones_sent_next_time(workspace: Workspace, server: RunningServer) -> None:
    """An export that grew is read on from where the last run stopped."""
    workspace.write_config(batch_size=2)
    workspace.write_rows(_rows(3))
    assert main(["push", "--config", str(workspace.config), "--quiet"]) == 0
    workspace.write_rows(_rows(5))  # the same three rows, then two more

    assert main(["push", "--config", str(workspace.config), "--quiet"]) == 0

    assert len(server.servicer.all_records()) == 5


def test_rewritten_export_is_refused_without_from_start(
    workspace: Workspace, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file whose already-sent part changed stops with exit 3, rather than guess what is new."""
    workspace.write_rows(_rows(2))
    assert main(["push", "--config", str(workspace.config), "--quiet"]) == 0
    workspace.write_rows([*_rows(1), ed_row(patient_national_id="ZZ000999C")])

    assert main(["push", "--config", str(workspace.config), "--quiet"]) == 3

    assert "--from-start" in capsys.readouterr().err
    assert len(server.servicer.stored) == 1


def test_changed_content_gets_a_new_batch_id(workspace: Workspace, server: RunningServer) -> None:
    """An edited record changes its batch's id, so the gateway stores the new content."""
    workspace.write_rows(_rows(2))
    assert main(["push", "--config", str(workspace.config), "--quiet"]) == 0
    workspace.write_rows([*_rows(1), ed_row(patient_national_id="ZZ000999C")])
    assert main(["push", "--config", str(workspace.config), "--quiet", "--from-start"]) == 0

    assert len(server.servicer.stored) == 2


def test_retries_unavailable_then_succeeds(
    workspace: Workspace, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """UNAVAILABLE twice then success: the batch is stored once with all its records."""
    server.servicer.failures.extend(
        [(grpc.StatusCode.UNAVAILABLE, "busy"), (grpc.StatusCode.UNAVAILABLE, "busy")]
    )
    workspace.write_rows(_rows(5))

    assert main(["push", "--config", str(workspace.config)]) == 0

    assert server.servicer.push_calls == 3
    assert len(server.servicer.stored) == 1
    assert len(server.servicer.all_records()) == 5
    assert capsys.readouterr().out.strip() == "read 5, sent 5, rejected 0, batches 1 (stored 1, duplicate 0)"


def test_gives_up_after_the_configured_retries(
    workspace: Workspace, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A gateway that stays UNAVAILABLE ends the run with exit 5 after retries + 1 attempts."""
    workspace.write_config(retries=2)
    server.servicer.failures.extend([(grpc.StatusCode.UNAVAILABLE, "down for maintenance")] * 5)
    workspace.write_rows(_rows(2))

    assert main(["push", "--config", str(workspace.config)]) == 5

    assert server.servicer.push_calls == 3
    err = capsys.readouterr().err
    assert "down for maintenance" in err
    assert len(err.strip().splitlines()) == 1


def test_invalid_argument_stops_with_exit_4_and_the_server_message(
    workspace: Workspace, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """INVALID_ARGUMENT is not retried: exit 4, the server's message on one stderr line."""
    server.servicer.failures.append(
        (grpc.StatusCode.INVALID_ARGUMENT, "records.event_days: a date lies outside")
    )
    workspace.write_rows(_rows(2))

    assert main(["push", "--config", str(workspace.config)]) == 4

    assert server.servicer.push_calls == 1
    captured = capsys.readouterr()
    assert captured.err == (
        "agent: error: gateway refused a batch: INVALID_ARGUMENT: records.event_days: a date lies outside\n"
    )
    assert captured.out == ""


def test_a_refused_batch_stays_in_the_spool_and_is_sent_by_the_next_run(
    workspace: Workspace, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A batch the gateway refused is not dropped: once the cause is fixed, the next run sends it."""
    server.servicer.failures.append((grpc.StatusCode.PERMISSION_DENIED, "not enrolled yet"))
    workspace.write_rows(_rows(2))
    assert main(["push", "--config", str(workspace.config)]) == 4

    assert main(["push", "--config", str(workspace.config)]) == 0

    assert len(server.servicer.all_records()) == 2
    out = capsys.readouterr().out.strip()
    assert out == "read 0, sent 2, rejected 0, batches 1 (stored 1, duplicate 0), 1 resent from the spool"


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.ALREADY_EXISTS],
)
def test_other_refusals_are_permanent(
    workspace: Workspace, server: RunningServer, code: grpc.StatusCode, capsys: pytest.CaptureFixture[str]
) -> None:
    """PERMISSION_DENIED, UNAUTHENTICATED and ALREADY_EXISTS stop at once with exit 4."""
    server.servicer.failures.append((code, "refused by policy"))
    workspace.write_rows(_rows(1))

    assert main(["push", "--config", str(workspace.config)]) == 4

    assert server.servicer.push_calls == 1
    assert f"{code.name}: refused by policy" in capsys.readouterr().err


def test_unreachable_gateway_is_transient(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listening: UNAVAILABLE after retries, exit 5, one line naming the contract request."""
    workspace.address = "127.0.0.1:1"
    workspace.write_config(retries=1)
    workspace.write_rows(_rows(1))

    assert main(["push", "--config", str(workspace.config)]) == 5

    err = capsys.readouterr().err
    assert err.startswith("agent: error: gateway did not accept the contract request")
    assert len(err.strip().splitlines()) == 1


def test_contract_is_cached_in_the_state_dir(workspace: Workspace, server: RunningServer) -> None:
    """The contract fetched from the gateway is kept as JSON for offline use."""
    workspace.write_rows(_rows(1))

    assert main(["push", "--config", str(workspace.config), "--quiet"]) == 0

    cached = json.loads((workspace.state / "contract-ed_visits.json").read_text())
    assert cached["dataset"] == "ed_visits"
    assert cached["version"] == 3
    assert [c["name"] for c in cached["columns"]][:2] == ["district", "age_band"]


def test_dataset_of_another_agency_is_a_config_error(
    workspace: Workspace, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """An agent configured for an agency that does not own the dataset stops with exit 2 before sending."""
    workspace.write_config(agency="metro-police")
    workspace.write_rows(_rows(1))

    assert main(["push", "--config", str(workspace.config)]) == 2

    assert server.servicer.push_calls == 0
    assert "agent.agency" in capsys.readouterr().err


def test_many_batches_in_flight_all_arrive(workspace: Workspace, server: RunningServer) -> None:
    """With several batches on the wire at once, every record still arrives exactly once."""
    workspace.write_config(batch_size=7, max_in_flight=4)
    workspace.write_rows(_rows(200))

    assert main(["push", "--config", str(workspace.config), "--quiet"]) == 0

    assert len(server.servicer.stored) == 29
    tokens = [record[0] for record in server.servicer.all_records()]
    assert len(tokens) == 200
    assert len(set(tokens)) == 200


def test_a_gateway_fault_is_retried(workspace: Workspace, server: RunningServer) -> None:
    """INTERNAL from the gateway (a fault on its side that may clear) is retried, not a stop."""
    server.servicer.failures.append((grpc.StatusCode.INTERNAL, "internal error"))
    workspace.write_rows(_rows(2))

    assert main(["push", "--config", str(workspace.config), "--quiet"]) == 0

    assert len(server.servicer.all_records()) == 2
