"""`agent run`: cycles on a schedule, stops cleanly on SIGTERM, outlives outages, logs without data."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from agent_testkit import RunningServer, Workspace, ed_row

from agents._state import AgentState
from agents.cli import main

REPO = Path(__file__).resolve().parents[2]


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_run_once_pushes_and_logs_one_json_line_per_event(
    workspace: Workspace, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """One cycle sends the export; stderr holds JSON events ending with the cycle's counts."""
    workspace.write_rows([ed_row(attendance_id=str(i)) for i in range(3)])

    assert main(["run", "--config", str(workspace.config), "--once"]) == 0

    events = _json_lines(capsys.readouterr().err)
    finished = next(e for e in events if e["event"] == "cycle.finished")
    assert finished["sent"] == 3
    assert [e["event"] for e in events][-1] == "service.stopped"
    assert len(server.servicer.all_records()) == 3


def test_run_once_with_the_gateway_down_exits_5_with_a_warning(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """An outage is a logged warning and exit 5 for --once, never a traceback."""
    workspace.write_config(retries=0)
    workspace.write_rows([ed_row()])

    assert main(["run", "--config", str(workspace.config), "--once"]) == 5

    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert any(e["event"] == "cycle.retry_later" for e in _json_lines(err))


def test_a_permanent_refusal_stops_the_service_with_its_exit_code(
    workspace: Workspace, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """PERMISSION_DENIED is not retried by the service either: exit 4, logged as service.failed."""
    server.servicer.failures.append((grpc.StatusCode.PERMISSION_DENIED, "not enrolled"))
    workspace.write_rows([ed_row()])

    assert main(["run", "--config", str(workspace.config)]) == 4

    err = capsys.readouterr().err
    assert any(line.startswith("{") and '"service.failed"' in line for line in err.splitlines())


def test_sigterm_stops_the_service_cleanly(workspace: Workspace, server: RunningServer) -> None:
    """A running service told to stop finishes and exits 0 after logging service.stopped."""
    workspace.write_rows([ed_row(attendance_id=str(i)) for i in range(5)])
    process = subprocess.Popen(
        [sys.executable, "-m", "agents", "run", "--config", str(workspace.config), "--interval", "3600"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while len(server.servicer.all_records()) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=30)

    assert process.returncode == 0, err
    events = [e["event"] for e in _json_lines(err)]
    assert "service.stopping" in events  # the signal may land during the cycle or while waiting
    assert events[-1] == "service.stopped"
    assert len(server.servicer.all_records()) == 5


def test_a_second_cycle_sends_only_what_is_new(workspace: Workspace, server: RunningServer) -> None:
    """Service mode is incremental: rows appended between cycles are the only ones sent next."""
    workspace.write_rows([ed_row(attendance_id="1")])
    assert main(["run", "--config", str(workspace.config), "--once", "--log-level", "error"]) == 0
    workspace.write_rows([ed_row(attendance_id="1"), ed_row(attendance_id="2", patient_national_id="ZZ1")])

    assert main(["run", "--config", str(workspace.config), "--once", "--log-level", "error"]) == 0

    assert len(server.servicer.all_records()) == 2
    assert len(server.servicer.stored) == 2


def test_no_identifier_reaches_any_log_line_output_or_state_file(
    workspace: Workspace, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """With debug logging, a bad row and a refused run, the raw identifiers, names and notes appear
    in no log line, no output and no file the agent writes (the spool holds ciphertext only)."""
    secrets = ["QX918273D", "Bartholomew Quincey", "overdose in the car park", "1961-02-03"]
    rows = [
        ed_row(patient_national_id=secrets[0], patient_name=secrets[1], clinical_notes=secrets[2]),
        ed_row(patient_national_id=secrets[0], date_of_birth=secrets[3], sex="unknown-sex-code"),
    ]
    workspace.write_rows(rows)
    server.servicer.failures.append((grpc.StatusCode.UNAVAILABLE, "busy"))
    assert main(["push", "--config", str(workspace.config), "--json", "--log-level", "debug"]) == 0
    server.servicer.failures.append((grpc.StatusCode.PERMISSION_DENIED, "denied"))
    workspace.write_rows([*rows, ed_row(patient_national_id=secrets[0], attendance_id="9")])
    assert main(["run", "--config", str(workspace.config), "--log-level", "debug"]) == 4

    captured = capsys.readouterr()
    written = b"".join(p.read_bytes() for p in workspace.state.rglob("*") if p.is_file())
    for secret in secrets:
        assert secret not in captured.out
        assert secret not in captured.err
        assert secret.encode() not in written
    assert "batch.acknowledged" in captured.err  # debug lines were on


def test_a_manual_push_holding_the_state_is_a_retry_not_a_stop(
    workspace: Workspace, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """While another agent process holds the state, a service cycle waits for later (exit 5 for
    --once) instead of stopping for good with a config error."""
    workspace.write_rows([ed_row()])
    workspace.state.mkdir(parents=True, exist_ok=True)
    with AgentState(workspace.state):
        assert main(["run", "--config", str(workspace.config), "--once"]) == 5

    assert any(e["event"] == "cycle.retry_later" for e in _json_lines(capsys.readouterr().err))


def test_a_rewritten_export_stops_the_service(
    workspace: Workspace, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """An export whose already-sent part changed cannot be fixed by retrying: the service exits 3."""
    workspace.write_rows([ed_row(attendance_id="1"), ed_row(attendance_id="2")])
    assert main(["run", "--config", str(workspace.config), "--once"]) == 0
    workspace.write_rows([ed_row(attendance_id="1", patient_national_id="ZZ9")])

    assert main(["run", "--config", str(workspace.config)]) == 3

    assert any(e["event"] == "service.failed" for e in _json_lines(capsys.readouterr().err))


def test_spool_rewind_lets_refused_batches_be_resealed_and_sent(
    workspace: Workspace, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Batches refused for good wait in the spool; rewind drops them and the next run re-reads and
    sends the same records, once."""
    workspace.write_config(batch_size=2)
    workspace.write_rows([ed_row(attendance_id=str(i)) for i in range(5)])
    server.servicer.failures.append((grpc.StatusCode.PERMISSION_DENIED, "key retired"))
    assert main(["push", "--config", str(workspace.config), "--quiet"]) == 4
    assert main(["spool", "status", "--config", str(workspace.config), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["waiting_batches"] >= 1

    assert main(["spool", "rewind", "--config", str(workspace.config)]) == 2  # asks for --yes
    assert main(["spool", "rewind", "--config", str(workspace.config), "--yes"]) == 0
    assert main(["push", "--config", str(workspace.config), "--quiet"]) == 0

    assert len(server.servicer.all_records()) == 5
    assert main(["spool", "status", "--config", str(workspace.config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["waiting_batches"] == 0
