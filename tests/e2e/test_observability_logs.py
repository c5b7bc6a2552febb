"""The gateway's log is JSON lines, and every line written while a request runs carries that
request's decision id, principal and agency; no line carries a pseudonym, a row or a value."""

from __future__ import annotations

import json
import re
from typing import Any

import grpc
import pytest
from e2e_harness import Running, ed_rows, seal, subjects_query, token

from gateway.server import configure_logging


def log_lines(err: str) -> list[dict[str, Any]]:
    lines = [line for line in err.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line parses: JSON lines only


def test_request_log_lines_carry_the_decision_id_principal_and_agency(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    """Log lines of an ingest, an answered query and a refused one each carry the decision id the caller was given, the calling principal and its agency."""
    configure_logging("debug", "json")
    capsys.readouterr()
    ack = running.ingest("agent:health").PushBatch(
        seal(running.layout, "health", "ed_visits", ed_rows("D01", 12) + ed_rows("D02", 15))
    )
    answer = running.query("health-analyst").Aggregate(subjects_query(group_by=["district"]))
    with pytest.raises(grpc.RpcError):
        running.query("health-analyst").Aggregate(subjects_query(group_by=["district", "age_band"]))
    lines = log_lines(capsys.readouterr().err)

    by_id: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        if "decision_id" in line:
            by_id.setdefault(line["decision_id"], []).append(line)
    agent_lines = by_id[ack.decision_id]
    assert {(line["principal"], line["agency"]) for line in agent_lines} == {
        ("spiffe://datashare.local/agency/health/agent/ed-agent-1", "health")
    }
    assert any(line["event"] == "decision" and line["outcome"] == "allow" for line in agent_lines)
    query_lines = by_id[answer.disclosure.decision_id]
    assert {line["agency"] for line in query_lines} == {"health"}
    assert any(line["event"] == "decision" and line["action"] == "query" for line in query_lines)
    refused = [ls for i, ls in by_id.items() if i not in (ack.decision_id, answer.disclosure.decision_id)]
    assert len(refused) == 1
    assert {line["event"] for line in refused[0]} >= {"decision", "rpc_refused"}
    assert all(
        line["level"] in ("debug", "info", "warning", "error") and "timestamp" in line for line in lines
    )


def test_logs_hold_no_pseudonym_row_or_value(running: Running, capsys: pytest.CaptureFixture[str]) -> None:
    """After a stored batch, one refused for a value outside the contract, and a query, no log line holds a token, a person, a dimension value of a row or a count of people."""
    configure_logging("debug", "json")
    capsys.readouterr()
    rows = ed_rows("D01", 13, prefix="zz-person-")
    running.ingest("agent:health").PushBatch(seal(running.layout, "health", "ed_visits", rows))
    bad = ed_rows("D02", 11, prefix="zz-other-")
    bad[0].dims["district"] = "QQ-not-a-district"
    with pytest.raises(grpc.RpcError):
        running.ingest("agent:health").PushBatch(seal(running.layout, "health", "ed_visits", bad))
    running.query("health-analyst").Aggregate(subjects_query(group_by=["district"]))
    text = capsys.readouterr().err
    assert log_lines(text)
    for secret in ("zz-person-", "zz-other-", "QQ-not-a-district", "25-34", token("zz-person-D01-0").hex()):
        assert secret not in text
    # no long hex (a token or a keyed pseudonym), and no released or true count of people (13)
    assert not re.search(r"[0-9a-f]{40,}", text)
    assert not re.search(r'": ?13[,}]', text)
