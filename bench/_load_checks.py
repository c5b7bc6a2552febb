"""What a load run must end with, read independently of the gateway's own answers.

- Records: the agent's own mapper run over the whole export (what should be stored) against the
  dataset table read straight from the database (what is). Subjects are re-keyed at rest, so each
  side is a multiset of records without their subject plus how many records each subject has.
- Audit: the chain verifies, and every answer an analyst received is in the log as an allowed
  query with the same decision id and the same cells released and withheld.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import sqlalchemy
import sqlalchemy.pool

from agents import Contract, build_mapper, load_cached_contract, load_config
from agents._keys import key_source
from agents._source import BadRow, open_source
from gateway._pb import audit_pb2, audit_pb2_grpc
from gateway._settings import ClientProfile
from gateway._tls import client_channel

RowKey = tuple[object, ...]


@dataclass(frozen=True)
class Expected:
    dataset: str
    columns: tuple[str, ...]  # the dataset table's columns after the subject, in mapper order
    records: Counter[RowKey]
    count: int
    rejected: int


def shape(rows: Iterable[tuple[object, ...]]) -> Counter[RowKey]:
    """Records without their subject (the first field), plus each subject's record count."""
    per_subject: Counter[object] = Counter()
    records: Counter[RowKey] = Counter()
    for row in rows:
        per_subject[row[0]] += 1
        records[tuple(row[1:])] += 1
    records.update((PER_SUBJECT, n) for n in per_subject.values())
    return records


def expected_records(agent_config: Path) -> Expected:
    """What the agent's mapper makes of the whole export (and how many rows it rejects); the
    agent must have fetched its contract once (it is read from the agent's state)."""
    config = load_config(agent_config)
    contract = Contract.from_proto(load_cached_contract(config.agent.state_dir, config.agent.dataset))
    mapper = build_mapper(config, contract, key_source(config.keys).linkage_key())
    rows: list[tuple[object, ...]] = []
    rejected = 0
    with open_source(config.source).open(config.source_columns()) as stream:
        for _line, row in stream:
            if isinstance(row, BadRow):
                rejected += 1
                continue
            try:
                token, day, codes, values = mapper.map(row)
            except Exception:  # noqa: BLE001 - a Rejected row, counted as the agent counts it
                rejected += 1
                continue
            dims = (contract.dimensions[i].domain[c] for i, c in enumerate(codes))
            rows.append((token, day, *dims, *values))
    columns = (
        "event_day",
        *(d.name for d in contract.dimensions),
        *(m.name for m in contract.measures),
    )
    return Expected(contract.dataset, columns, shape(rows), len(rows), rejected)


def _engine(url: str) -> sqlalchemy.Engine:
    return sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)


def stored_count(url: str, dataset: str) -> int:
    """Rows in the dataset table; 0 when the database cannot be read just now (mid-restart)."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sqlalchemy.text(f"SELECT COUNT(*) FROM ds_{dataset}")).scalar_one())
    except sqlalchemy.exc.SQLAlchemyError:
        return 0
    finally:
        engine.dispose()


def stored_records(url: str, expected: Expected) -> Counter[RowKey]:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            sql = f"SELECT subject, {', '.join(expected.columns)} FROM ds_{expected.dataset}"
            return shape(tuple(row) for row in conn.execute(sqlalchemy.text(sql)))
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Answer:
    """What an analyst received with an answer: the decision id and the cells released/withheld."""

    decision_id: str
    cells_released: int
    cells_withheld: int


@dataclass(frozen=True)
class AuditFindings:
    chain_ok: bool
    entries: int
    problem: str
    allowed_queries: int
    answers: int
    unaudited: tuple[str, ...]  # decision ids of answers with no matching allow entry
    audited_not_received: int  # allow entries whose answer never arrived (a killed gateway)


def check_audit(pki_root: Path, address: str, answers: Iterable[Answer]) -> AuditFindings:
    """Verify the chain and match every received answer with its allow entry."""
    profile = ClientProfile.from_file(pki_root / "clients" / "auditor.toml")
    channel = client_channel(dataclasses.replace(profile, address=address))
    try:
        stub = audit_pb2_grpc.AuditStub(channel)
        report = stub.VerifyLog(audit_pb2.VerifyLogRequest(), timeout=120)
        logged = list(stub.ListDecisions(audit_pb2.ListDecisionsRequest(outcome="allow"), timeout=120))
    except grpc.RpcError as exc:
        raise RuntimeError(f"audit check failed: {exc.code().name}") from None
    finally:
        channel.close()
    return match_answers(report, logged, answers)


def match_answers(
    report: audit_pb2.VerifyReport, logged: Iterable[audit_pb2.Decision], answers: Iterable[Answer]
) -> AuditFindings:
    """Each answer against the allowed query entries: same decision id, same cells."""
    queries = {d.decision_id: (d.cells_released, d.cells_withheld) for d in logged if d.action == "query"}
    received = list(answers)
    unaudited = tuple(
        a.decision_id for a in received if queries.get(a.decision_id) != (a.cells_released, a.cells_withheld)
    )
    return AuditFindings(
        chain_ok=report.ok,
        entries=report.entries_checked,
        problem=report.problem,
        allowed_queries=len(queries),
        answers=len(received),
        unaudited=unaudited,
        audited_not_received=len(set(queries) - {a.decision_id for a in received}),
    )


PER_SUBJECT = "records-per-subject"


def count_records(counts: Counter[RowKey]) -> int:
    return sum(n for key, n in counts.items() if key[0] != PER_SUBJECT)


def compare(expected: Mapping[str, Expected], stored: Mapping[str, Counter[RowKey]]) -> list[str]:
    """Datasets whose store differs from the export: how many records are missing or extra, or
    that they are spread over people differently; never a value."""
    problems = []
    for dataset, want in expected.items():
        have = stored[dataset]
        missing, extra = count_records(want.records - have), count_records(have - want.records)
        if missing or extra:
            problems.append(f"{dataset}: {missing} expected record(s) missing, {extra} unexpected")
        elif have != want.records:
            problems.append(f"{dataset}: the records are spread over people differently")
    return problems
