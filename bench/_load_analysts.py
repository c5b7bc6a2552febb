"""Analysts for a load run: threads, each with its own mutual-TLS channel to one of the gateways,
asking a fixed mix of questions in a loop with a short random pause between them.

The mix: five questions the demo agreement allows (health's analyst: distinct people, records,
a clamped sum with the dominance rule, a linked question) and two it refuses (the police analyst's
agency receives nothing; age band with district is a forbidden combination). An UNAVAILABLE answer
is asked again, at most ``RETRIES`` times with exponential backoff and jitter, as a client
library would: the
gateway says UNAVAILABLE when asking again may succeed (a racing release moved the ledger, the
database or the policy engine is away). Every call and its outcome is recorded.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from dataclasses import dataclass

import grpc

from bench._load_checks import Answer
from gateway._pb import query_pb2, query_pb2_grpc
from gateway._settings import ClientProfile
from gateway._tls import client_channel
from gateway.pki import PkiLayout

CALL_TIMEOUT_S = 30.0  # generous: on two shared, busy cores p99 reached 13 s
RETRIES = 8
RETRY_PAUSE_S = 0.1  # doubled each retry up to RETRY_PAUSE_MAX_S, with full jitter
RETRY_PAUSE_MAX_S = 2.0
THINK_S = (0.2, 1.0)  # an analyst's pause between questions, uniform
# gRPC's default reconnect backoff grows to 120 s; an interactive client retries sooner, so a
# gateway that is back is found within a second or two
CHANNEL_OPTIONS = (("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 1000))
AGREEMENT, PURPOSE = "ag-2026-001", "overdose-prevention"


def _ask(dataset: str, *measures: query_pb2.MeasureSpec, **fields: object) -> query_pb2.AggregateRequest:
    request = query_pb2.AggregateRequest(
        agreement_id=AGREEMENT, purpose=PURPOSE, dataset=dataset, measures=list(measures)
    )
    for name, value in fields.items():
        if isinstance(value, list):
            getattr(request, name).extend(value)
        else:
            getattr(request, name).CopyFrom(value)
    return request


SUBJECTS = query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUBJECTS)
RECORDS = query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_RECORDS)
STAY = query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUM, field="length_of_stay_hours")
OVERDOSE = query_pb2.ValueFilter(dimension="presentation", values=["overdose"])
ALL_MONTHS = query_pb2.MonthRange(first="2023-01", last="2025-12")  # the synthetic exports' span


@dataclass(frozen=True)
class Question:
    name: str
    client: str  # the client profile asking
    request: query_pb2.AggregateRequest
    allowed: bool  # False: the policy must refuse it (PERMISSION_DENIED)


QUESTIONS = (
    Question(
        "overdoses by district and year",
        "health-analyst",
        _ask("ed_visits", SUBJECTS, group_by=["district", "year"], filters=[OVERDOSE], months=ALL_MONTHS),
        True,
    ),
    Question(
        "visits by sex and quarter",
        "health-analyst",
        _ask("ed_visits", SUBJECTS, RECORDS, group_by=["sex", "quarter"], months=ALL_MONTHS),
        True,
    ),
    Question(
        "length of stay by district",
        "health-analyst",
        _ask("ed_visits", SUBJECTS, STAY, group_by=["district"]),
        True,
    ),
    Question(
        "police incidents by age band, 2025",
        "health-analyst",
        _ask(
            "police_incidents",
            SUBJECTS,
            group_by=["age_band"],
            months=query_pb2.MonthRange(first="2025-01", last="2025-12"),
        ),
        True,
    ),
    Question(
        "overdoses after a police contact, by year",
        "health-analyst",
        _ask(
            "ed_visits",
            SUBJECTS,
            group_by=["year"],
            filters=[OVERDOSE],
            months=ALL_MONTHS,
            link=query_pb2.Link(dataset="police_incidents", days_before=30),
        ),
        True,
    ),
    Question(
        "police analyst asks", "police-analyst", _ask("ed_visits", SUBJECTS, group_by=["district"]), False
    ),
    Question(
        "age band with district",
        "health-analyst",
        _ask("ed_visits", SUBJECTS, group_by=["age_band", "district"]),
        False,
    ),
)


@dataclass(frozen=True)
class Call:
    """One question asked (with its retries): when, where, what came back, and how long it took."""

    analyst: int
    gateway: int
    question: str
    allowed: bool
    started: float  # monotonic, first attempt
    finished: float  # monotonic, last attempt
    seconds: float  # the last attempt's round trip
    code: str  # the final status: "OK", "PERMISSION_DENIED", "UNAVAILABLE", ...
    detail: str  # the final status's details (never data: the gateway's plain reason)
    attempts: int
    answer: Answer | None = None
    retried_for: tuple[str, ...] = ()  # the details of each UNAVAILABLE that was asked again

    @property
    def expected(self) -> bool:
        """OK for an allowed question, PERMISSION_DENIED for a refused one."""
        return self.code == ("OK" if self.allowed else "PERMISSION_DENIED")


def _answer(result: query_pb2.AggregateResult) -> Answer:
    released = sum(1 for cell in result.cells if not any(v.withheld for v in cell.values))
    return Answer(result.disclosure.decision_id, released, result.disclosure.cells_withheld)


class Analysts:
    """``start()`` the threads, ``stop()`` them (each finishes the question it is asking)."""

    def __init__(self, layout: PkiLayout, addresses: tuple[str, str], count: int, seed: int = 1) -> None:
        self._layout, self._addresses, self._count, self._seed = layout, addresses, count, seed
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for index in range(self._count):
            thread = threading.Thread(target=self._run, args=(index,), name=f"analyst-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=CALL_TIMEOUT_S * (RETRIES + 1) + 5)

    def _stubs(self, gateway: int) -> tuple[list[grpc.Channel], dict[str, query_pb2_grpc.QueryStub]]:
        channels, stubs = [], {}
        for name in ("health-analyst", "police-analyst"):
            profile = ClientProfile.from_file(self._layout.client_profile(name))
            channel = client_channel(
                dataclasses.replace(profile, address=self._addresses[gateway]), options=CHANNEL_OPTIONS
            )
            channels.append(channel)
            stubs[name] = query_pb2_grpc.QueryStub(channel)
        return channels, stubs

    def _run(self, index: int) -> None:
        rng = random.Random(self._seed * 1000 + index)
        gateway = index % 2
        channels, stubs = self._stubs(gateway)
        try:
            while not self._stop.is_set():
                question = rng.choice(QUESTIONS)
                call = self._call(index, gateway, stubs[question.client], question)
                with self._lock:
                    self.calls.append(call)
                self._stop.wait(rng.uniform(*THINK_S))
        finally:
            for channel in channels:
                channel.close()

    def _call(self, index: int, gateway: int, stub: query_pb2_grpc.QueryStub, question: Question) -> Call:
        started = time.monotonic()
        attempt = 0
        retried_for: list[str] = []
        while True:
            attempt += 1
            begun = time.perf_counter()
            try:
                result = stub.Aggregate(question.request, timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as exc:
                seconds = time.perf_counter() - begun
                code, detail = exc.code(), exc.details() or ""
                if code == grpc.StatusCode.UNAVAILABLE and attempt <= RETRIES:
                    retried_for.append(detail)
                    time.sleep(random.uniform(0, min(RETRY_PAUSE_MAX_S, RETRY_PAUSE_S * 2**attempt)))
                    continue
                return Call(
                    index, gateway, question.name, question.allowed, started, time.monotonic(), seconds,
                    code.name, detail, attempt, None, tuple(retried_for),
                )  # fmt: skip
            seconds = time.perf_counter() - begun
            return Call(
                index, gateway, question.name, question.allowed, started, time.monotonic(), seconds,
                "OK", "", attempt, _answer(result), tuple(retried_for),
            )  # fmt: skip
