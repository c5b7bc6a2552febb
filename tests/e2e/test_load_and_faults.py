"""Load and faults (issue 7 item 3): two agents pushing growing CSV exports and twenty analysts
querying over mutual TLS, against two gateway processes on one PostgreSQL — first undisturbed,
then with the database restarted, a gateway killed, and the policy engine made unavailable.

Each run is bench/_load.py's: a private PostgreSQL 15 cluster of its own (never the shared server,
which other tests use meanwhile), real child processes, a fault window from the fault to the
moment the failed part answers again. Time budget, about 5 minutes in all: the clean run lasts
60 s, each fault run 35 s (the fault 30% in, a 4 s outage), plus start-up, catch-up and checks.
The figures are printed (``-s`` not needed) and the README's "Measured so far" quotes them.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from bench._load import GRACE_S, LoadReport, LoadSettings, run_load
from bench._load_site import AGENCIES
from bench._pg_cluster import missing_binaries

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(missing_binaries() is not None, reason=str(missing_binaries())),
]

CLEAN_S = 60.0
FAULT_S = 35.0


def _run(fault: str, seconds: float, root: Path, capsys: pytest.CaptureFixture[str]) -> LoadReport:
    report = run_load(LoadSettings(fault=fault, seconds=seconds), root)
    with capsys.disabled():
        print(f"\nload run ({fault}): {json.dumps(report.summary())}")
    return report


def _nothing_lost_nothing_unaudited(report: LoadReport) -> None:
    assert report.agents_alive, "an agent stopped during the run"
    assert report.agent_exits == dict.fromkeys(AGENCIES, 0)
    assert report.record_problems == []
    assert report.stored == report.expected
    assert report.audit is not None
    assert report.audit.chain_ok, report.audit.problem
    assert report.audit.unaudited == (), "answers were released without their audit entry"
    assert report.tracebacks == [], "a process logged a traceback instead of a clean error"


def _back_on_its_own(report: LoadReport) -> None:
    assert report.window is not None, "the fault was not injected"
    assert report.unexpected == [], "failures outside the fault window"
    assert report.unclean == [], "failures in the fault window with a status other than UNAVAILABLE"
    assert report.fault_felt, "no call met the fault: nothing was tested"
    for gateway, seconds in report.recovered_s.items():
        assert seconds is not None, f"gateway {gateway} did not answer again after the fault"
        assert seconds <= GRACE_S


def test_clean_load_answers_everything_and_loses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Undisturbed, every question ends as expected (answered, or refused by the policy), every
    record of the exports is stored once, and the audit log holds exactly the answers released."""
    report = _run("none", CLEAN_S, tmp_path, capsys)

    assert report.unexpected == []
    assert report.answered and any(c.expected and not c.allowed for c in report.calls)
    _nothing_lost_nothing_unaudited(report)
    assert report.audit is not None
    assert report.audit.allowed_queries == report.audit.answers


def test_database_restarted_mid_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With the database stopped and started again mid-run, callers get UNAVAILABLE meanwhile,
    the agents carry their batches through, nothing answers without an audit entry, and both
    gateways answer again on their own."""
    report = _run("database", FAULT_S, tmp_path, capsys)

    _back_on_its_own(report)
    _nothing_lost_nothing_unaudited(report)


def test_gateway_killed_mid_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With one gateway process SIGKILLed mid-run and started again, its callers get UNAVAILABLE
    meanwhile, its agent's batches arrive once, and the audit log covers every answer."""
    report = _run("gateway", FAULT_S, tmp_path, capsys)

    _back_on_its_own(report)
    _nothing_lost_nothing_unaudited(report)


@pytest.mark.skipif(
    importlib.util.find_spec("opa_bindings") is None,
    reason="the OPA-speaking sidecar needs opa-golib-python-bindings (see the README's test command)",
)
def test_policy_engine_unavailable_mid_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With both gateways on engine = "opa" and their sidecars killed and started again (empty),
    every decision meanwhile fails closed as UNAVAILABLE, agents retry instead of giving up,
    and the gateways push their bundle again and answer on their own."""
    report = _run("policy", FAULT_S, tmp_path, capsys)

    _back_on_its_own(report)
    _nothing_lost_nothing_unaudited(report)
