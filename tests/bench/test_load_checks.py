"""The load run's own checks can fail: an unaudited answer, a lost or doubled record, a failure
outside the fault window or with the wrong status are each reported (bench/_load*.py)."""

from __future__ import annotations

import dataclasses
from collections import Counter

from bench._load import GRACE_S, LoadReport, LoadSettings, Window
from bench._load_analysts import Call
from bench._load_checks import PER_SUBJECT, Answer, Expected, compare, match_answers, shape
from gateway._pb import audit_pb2

VERIFIED = audit_pb2.VerifyReport(ok=True, entries_checked=3)


def _allowed(decision_id: str, released: int, withheld: int, action: str = "query") -> audit_pb2.Decision:
    return audit_pb2.Decision(
        decision_id=decision_id,
        action=action,
        outcome="allow",
        cells_released=released,
        cells_withheld=withheld,
    )


def test_an_answer_without_its_matching_allow_entry_is_reported() -> None:
    """An answer whose decision id is not logged, or is logged with other cell counts, or only as
    another action, is unaudited; a matching one is not."""
    logged = [_allowed("a", 5, 1), _allowed("b", 5, 1), _allowed("d", 2, 0, action="ingest")]
    answers = [Answer("a", 5, 1), Answer("b", 4, 2), Answer("c", 1, 0), Answer("d", 2, 0)]

    findings = match_answers(VERIFIED, logged, answers)

    assert findings.unaudited == ("b", "c", "d")
    assert (findings.allowed_queries, findings.answers) == (2, 4)


def test_an_allow_entry_whose_answer_never_arrived_is_counted_not_blamed() -> None:
    """A logged release the analyst never received (a gateway killed after the append) is counted
    apart and does not make any answer unaudited."""
    findings = match_answers(VERIFIED, [_allowed("a", 3, 0), _allowed("lost", 3, 0)], [Answer("a", 3, 0)])

    assert findings.unaudited == ()
    assert findings.audited_not_received == 1


def test_missing_and_doubled_records_are_both_reported() -> None:
    """The store compared with the export: one record short is missing, one twice is extra."""
    rows = [("s1", 1, "D01"), ("s1", 2, "D01"), ("s2", 2, "D02")]
    want = Expected("ed_visits", ("event_day", "district"), shape(rows), len(rows), 0)

    assert compare({"ed_visits": want}, {"ed_visits": shape(rows)}) == []
    doubled = compare({"ed_visits": want}, {"ed_visits": shape([*rows[:2], rows[1]])})
    assert doubled == ["ed_visits: 1 expected record(s) missing, 1 unexpected"]
    moved = compare({"ed_visits": want}, {"ed_visits": shape([*rows[:2], ("s1", 2, "D02")])})
    assert moved == ["ed_visits: the records are spread over people differently"]


def test_records_moved_between_subjects_change_the_shape() -> None:
    """The same records split differently between people do not compare equal (subjects are
    re-keyed at rest, so they are compared by how many records each has)."""
    together = shape([("s1", 1, "D01"), ("s1", 1, "D01")])
    apart = shape([("s1", 1, "D01"), ("s2", 1, "D01")])

    assert together != apart
    assert together - Counter({(PER_SUBJECT, 2): 1}) == apart - Counter({(PER_SUBJECT, 1): 2})


def _call(at: float, code: str, *, allowed: bool = True, gateway: int = 0) -> Call:
    return Call(0, gateway, "q", allowed, at, at + 0.1, 0.1, code, "", 1)


def _report(calls: list[Call], window: Window | None) -> LoadReport:
    return LoadReport(
        settings=LoadSettings(fault="none" if window is None else "database"),
        calls=calls,
        t0=0.0,
        window=window,
        expected={},
        stored={},
        record_problems=[],
        push_seconds=1.0,
        catch_up_s=0.0,
        audit=None,
        agent_exits={},
        agents_alive=True,
        gateway_cpu_s=0.0,
        tracebacks=[],
    )


def test_failures_are_judged_by_the_fault_window_and_their_status() -> None:
    """UNAVAILABLE inside the window (or its grace) is the fault's; INTERNAL there is unclean; any
    failure after the grace, or in a run without a fault, is unexpected; refusals are expected."""
    window = Window(10.0, 14.0)
    inside, unclean = _call(12.0, "UNAVAILABLE"), _call(11.0, "INTERNAL")
    late = _call(14.0 + GRACE_S + 1, "UNAVAILABLE")
    calls = [_call(1.0, "OK"), _call(12.0, "PERMISSION_DENIED", allowed=False), inside, unclean, late]

    report = _report(calls, window)

    assert report.unexpected == [late]
    assert report.unclean == [unclean]
    assert report.during_fault == Counter({"UNAVAILABLE": 1, "INTERNAL": 1})
    assert report.fault_felt == 2
    assert _report(calls, None).unexpected == [inside, unclean, late]


def test_an_allowed_question_refused_is_a_failure() -> None:
    """A question the agreement allows that comes back PERMISSION_DENIED is not 'as expected',
    and a refused one that comes back OK is not either."""
    assert not _call(1.0, "PERMISSION_DENIED").expected
    assert not _call(1.0, "OK", allowed=False).expected


def test_a_fault_ridden_out_by_retries_is_still_felt_but_ledger_retries_are_not() -> None:
    """A question that met UNAVAILABLE in the window and then got its answer shows the fault was
    felt; one that only lost the release ledger's race does not."""
    window = Window(10.0, 14.0)
    ledger = dataclasses.replace(_call(12.0, "OK"), retried_for=("release ledger: another answer",))
    assert _report([ledger], window).fault_felt == 0
    rode_out = dataclasses.replace(
        _call(12.0, "OK"), retried_for=("audit log: could not", "policy engine unavailable")
    )
    assert _report([ledger, rode_out], window).fault_felt == 2
    assert _report([rode_out], None).fault_felt == 0
