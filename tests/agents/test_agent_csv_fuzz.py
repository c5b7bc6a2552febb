"""Fuzzing the agent's CSV reader and mapper together, as ``agent push`` drives them: any bytes
after the header (odd encodings, stray and doubled quotes, NUL, bare CR, very long lines, binary
junk) become accepted records or rejects with a line, a field and a reason in fixed words; no
crash, and no value from the file in a reject. A well-formed valid record is never lost."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import agent_testkit
import pytest
from agent_testkit import ED_HEADER, AgencyKeys, Workspace, make_contract, make_workspace
from fuzz_strategies import ODD, examples, fuzz_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents import load_config
from agents._config import AgentConfig
from agents._contract import Contract
from agents._mapping import Mapper, Rejected, build_mapper
from agents._pipeline import ROW, PushSummary, iter_stretches
from agents._source import BadRow, CsvSource
from agents.errors import ConfigError, SourceError

pytestmark = pytest.mark.fuzz

FIELDS = {ROW, "subject", "event_date", "age_band", "sex", "district", "presentation", "length_of_stay_hours"}
# Every reason a reject may give, numbers written N: a new one is reviewed (could it carry a
# value from the file?) before it is added here.
REASONS = {
    "the line is not well-formed CSV (an unclosed quote?)",
    "wrong number of fields",
    "bytes that are not valid text in the configured encoding",
    "missing date",
    "not a valid date in the configured format",
    "missing identifier",
    "outside the years N-N",
    "value not listed in the map",
    "missing value",
    "no entry in the lookup file",
    "date of birth is after the event date",
    "age fits no band",
    "missing number",
    "not a number",
    "not a finite number",
}


@dataclass(frozen=True)
class Agent:
    config: AgentConfig
    mapper: Mapper


@pytest.fixture(scope="module")
def agent(
    tmp_path_factory: pytest.TempPathFactory, pki: agent_testkit.TestPki, agency_keys: AgencyKeys
) -> Agent:
    workspace: Workspace = make_workspace(tmp_path_factory.mktemp("fuzz") / "agent", pki, agency_keys)
    config = load_config(workspace.config)
    return Agent(config, build_mapper(config, Contract.from_proto(make_contract()), agency_keys.linkage_key))


# --- records and how they are written ---------------------------------------------------------


def _when(day: int, minute: int) -> str:
    return (dt.datetime(2021, 1, 1) + dt.timedelta(days=day, minutes=minute)).strftime("%Y-%m-%d %H:%M")


@st.composite
def valid_record(draw: st.DrawFn) -> dict[str, str]:
    """A record the mapper accepts, with hostile text in the columns it never reads."""
    day, minute = draw(st.integers(0, 1_500)), draw(st.integers(0, 1_439))
    born = dt.date(1930, 1, 1) + dt.timedelta(days=draw(st.integers(0, 30_000)))
    return {
        "attendance_id": draw(fuzz_text(20)),
        "patient_national_id": draw(st.from_regex(r"[A-Za-z]{2}[ -]?[0-9]{6}[A-Za-z]", fullmatch=True)),
        "patient_name": draw(fuzz_text(40)),
        "date_of_birth": born.isoformat(),
        "sex": draw(st.sampled_from(["F", "M", "U", ""])),
        "home_postcode": draw(st.sampled_from(["ZX1 1AA", "ZX2 2BB", "zx3 3cc"])),
        "arrival_time": _when(day, minute),
        "departure_time": _when(day, minute + draw(st.integers(0, 72 * 60))),
        "triage_code": draw(st.sampled_from(["T01", "T02", "T03"])),
        "clinical_notes": draw(fuzz_text(200)),
    }


@st.composite
def hostile_record(draw: st.DrawFn) -> dict[str, str]:
    """A valid record with some columns the mapper reads replaced by junk."""
    record = draw(valid_record())
    for column in draw(st.sets(st.sampled_from(ED_HEADER), max_size=4)):
        record[column] = draw(
            st.sampled_from(["", " ", "NaN", "inf", "1e999", "9999-12-31", "1899-12-31 00:00", "-1", "T99"])
            | fuzz_text(30)
        )
    return record


def _csv_line(values: list[str], terminator: str) -> str:
    """One record as RFC 4180 writes it: a field holding CR or LF is quoted. (csv.writer with
    lineterminator="\n" leaves a field with a bare CR unquoted, which no reader takes back.)"""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue().removesuffix("\r\n") + terminator


@dataclass(frozen=True)
class Line:
    data: bytes
    valid: bool  # a valid record, written as a CSV writer writes it, in the file's encoding


@st.composite
def line(draw: st.DrawFn) -> Line:
    form = draw(
        st.sampled_from(["valid", "valid", "hostile", "unquoted", "latin-1", "binary", "quotes", "long"])
    )
    record = draw(valid_record() if form in ("valid", "unquoted", "latin-1") else hostile_record())
    values = [record[c] for c in ED_HEADER]
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    if form in ("valid", "hostile"):
        return Line(_csv_line(values, terminator).encode("utf-8"), form == "valid")
    if form == "unquoted":  # commas, quotes and line breaks inside fields left as they are
        return Line((",".join(values) + terminator).encode("utf-8"), False)
    if form == "latin-1":  # one line exported in another encoding
        return Line(_csv_line(values, terminator).encode("latin-1", "replace"), False)
    if form == "binary":
        return Line(draw(st.binary(max_size=120)) + b"\n", False)
    if form == "quotes":  # stray, doubled and unclosed quotes in random places
        pieces = draw(
            st.lists(st.sampled_from(['"', '""', ",", "a", "\n", "\r", '"\n', ODD[0]]), max_size=30)
        )
        return Line(("".join(pieces) + "\n").encode("utf-8"), False)
    width = draw(st.integers(10_000, 50_000))
    return Line((draw(st.sampled_from(["x", ",", '"', "é"])) * width + "\n").encode("utf-8"), False)


# --- reading -----------------------------------------------------------------------------------


def _write(path: Path, lines: list[Line]) -> list[int]:
    """Write the header and ``lines``; the line number each one starts at."""
    header = (",".join(ED_HEADER) + "\n").encode()
    starts, number = [], 2
    with path.open("wb") as handle:
        handle.write(header)
        for item in lines:
            starts.append(number)
            number += item.data.count(b"\n")
            handle.write(item.data)
    old = path.stat().st_mtime - 3_600  # settled: nobody is still writing it
    os.utime(path, (old, old))
    return starts


def _outcomes(agent: Agent) -> Iterator[tuple[int, str | None, str | None]]:
    """(line, field, reason) per source record, field and reason None when it was accepted."""
    with CsvSource(agent.config.source).open(agent.config.source_columns()) as stream:  # type: ignore[arg-type]
        for number, row in stream:
            if isinstance(row, BadRow):
                yield number, ROW, row.problem
                continue
            try:
                agent.mapper.map(row)
            except Rejected as rejected:
                yield number, rejected.field, rejected.problem
            else:
                yield number, None, None


@settings(
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], max_examples=examples(0.5)
)
@given(lines=st.lists(line(), min_size=1, max_size=12))
def test_any_export_gives_records_or_rejects_in_fixed_words(agent: Agent, lines: list[Line]) -> None:
    """Every record is accepted or rejected with a line, a field and a fixed reason; every valid
    record written before the first broken line is accepted; the pipeline counts agree."""
    path = Path(agent.config.source.path)  # type: ignore[union-attr]
    starts = _write(path, lines)
    total_lines = 1 + sum(item.data.count(b"\n") for item in lines)
    outcomes = list(_outcomes(agent))
    for number, field, reason in outcomes:
        assert 2 <= number <= total_lines
        if field is not None:
            assert field in FIELDS
            assert re.sub(r"[0-9]+", "N", reason or "") in REASONS, reason
    accepted = {number for number, field, _ in outcomes if field is None}
    for start, item in zip(starts, lines, strict=True):
        if not item.valid:
            break  # after a broken line the reader may see the next ones otherwise (see below)
        assert start in accepted
    summary = PushSummary()
    with CsvSource(agent.config.source).open(agent.config.source_columns()) as stream:  # type: ignore[arg-type]
        stretches = list(iter_stretches(stream, agent.mapper, 5, summary, stream.position()))
    rejects = [r for s in stretches for r in s.rejects]
    assert [(r.line, r.field, r.reason) for r in rejects] == [o for o in outcomes if o[1] is not None]
    assert sum(s.count for s in stretches) == len(accepted)
    assert summary.read == len(outcomes) and summary.rejected == len(rejects)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=400))
def test_any_bytes_as_a_whole_file_are_read_or_refused_by_name(agent: Agent, raw: bytes) -> None:
    """Random bytes, header included, give rows and rejects, or a SourceError/ConfigError naming
    the file and a column of the config, never one of the file's bytes."""
    path = Path(agent.config.source.path)  # type: ignore[union-attr]
    path.write_bytes(raw)
    os.utime(path, (0, 0))
    try:
        outcomes = list(_outcomes(agent))
    except (SourceError, ConfigError) as error:
        message = error.message.replace(str(path), "<path>")
        assert re.fullmatch(r"<path>: [A-Za-z ,.'()_-]+", message), message
    else:
        assert all(f is None or re.sub(r"[0-9]+", "N", r or "") in REASONS for _, f, r in outcomes)
