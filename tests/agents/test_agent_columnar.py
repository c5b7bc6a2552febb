"""The block path (agents/_csv_blocks.py reading many lines at once, agents/_columnar.py mapping
them with array kernels) against the row path it stands in for (the csv module one line at a
time, the compiled row mapper): on any export, the same stretches cut at the same positions, the
same records in them, the same rejects with the same lines, fields and reasons, the same counts.
Batch ids hang on exactly these (agents/_seal.py), so a file read one way and re-read the other
after a crash still resends as duplicates."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import agent_testkit
import pytest
from agent_testkit import ED_HEADER, AgencyKeys, Workspace, make_contract, make_workspace
from fuzz_strategies import ODD, examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents import _source, load_config
from agents._config import AgentConfig, CsvSourceSettings
from agents._contract import Contract
from agents._mapping import Mapper, build_mapper
from agents._pipeline import PushSummary, iter_stretches
from agents._source import CsvSource, RowBlock

pytestmark = pytest.mark.fuzz

HOURS = 'transform = "hours_between"\ncolumns = ["arrival_time", "departure_time"]\nformat = "%Y-%m-%d %H:%M"'
# the other shapes the block mapper knows: a month contract, two id columns, an ISO format with
# a T and seconds, a number measure
VARIANT = (
    ('columns = ["patient_national_id"]', 'columns = ["patient_national_id", "patient_name"]'),
    (
        'column = "arrival_time"\nformat = "%Y-%m-%d %H:%M"',
        'column = "arrival_time"\nformat = "%Y-%m-%dT%H:%M:%S"',
    ),
    (HOURS, 'transform = "number"\ncolumn = "departure_time"'),
)


@dataclass(frozen=True)
class Paths:
    """One configuration's two mappers: with the block mapper, and the row mapper alone."""

    config: AgentConfig
    blocks: Mapper
    rows: Mapper


def _paths(workspace: Workspace, granularity: str, replacements: tuple[tuple[str, str], ...]) -> Paths:
    text = workspace.config.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new)
    workspace.config.write_text(text, encoding="utf-8")
    config = load_config(workspace.config)
    contract = Contract.from_proto(make_contract(granularity))
    key = workspace.keys.linkage_key
    blocks, rows = build_mapper(config, contract, key), build_mapper(config, contract, key, columnar=False)
    assert blocks.columnar is not None and rows.columnar is None
    return Paths(config, blocks, rows)


@pytest.fixture(scope="module")
def plain(
    tmp_path_factory: pytest.TempPathFactory, pki: agent_testkit.TestPki, agency_keys: AgencyKeys
) -> Paths:
    return _paths(make_workspace(tmp_path_factory.mktemp("plain") / "agent", pki, agency_keys), "day", ())


@pytest.fixture(scope="module")
def variant(
    tmp_path_factory: pytest.TempPathFactory, pki: agent_testkit.TestPki, agency_keys: AgencyKeys
) -> Paths:
    return _paths(
        make_workspace(tmp_path_factory.mktemp("variant") / "agent", pki, agency_keys), "month", VARIANT
    )


# --- values near every edge the block mapper checks ------------------------------------------

SPACES = st.sampled_from(["", "", "", " ", "\t", "  ", "\x1c", "\xa0", "\u3000", "\x0b"])


def _padded(value: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda left, v, right: left + v + right, SPACES, value, SPACES)


def _fine_moment(draw: st.DrawFn, *, t_format: bool) -> str:
    day = dt.date(1900, 1, 1) + dt.timedelta(days=draw(st.integers(0, 299 * 365)))
    hour, minute, second = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59))
    return (
        f"{day.isoformat()}T{hour:02d}:{minute:02d}:{second:02d}"
        if t_format
        else f"{day.isoformat()} {hour:02d}:{minute:02d}"
    )


def _odd_moments(t_format: bool) -> list[str]:
    """Dates and times at an edge of what one of the two paths' parsers takes."""
    sep, s = ("T", ":00") if t_format else (" ", "")
    return [
        f"2024-1-5{sep}3:04{s}",  # not zero-padded
        f"2024-02-29{sep}10:00{s}",
        f"2023-02-29{sep}10:00{s}",
        f"2023-02-30{sep}10:00{s}",
        f"2023-04-31{sep}10:00{s}",
        f"0000-01-01{sep}00:00{s}",
        f"1899-12-31{sep}23:59{s}",
        f"2199-12-31{sep}23:59{s}",
        f"2200-01-01{sep}00:00{s}",
        f"2023-05-05{sep}24:00{s}",
        f"2023-05-05{sep}10:60{s}",
        "2023-05-05T10:00:60",
        "2023-05-05 10:00:60",
        "2023-05-05T10:00:59.5",
        "2023-05-05T10:00",
        "2023-05-05 10:00",
        "2023-05-05  10:00",
        "2023-05-05",
        f"2023-05-05{sep}10:00{s}Z",
        "２０２４-01-01 10:00",  # noqa: RUF001 - fullwidth digits, which \\d takes
        "",
        "tomorrow",
    ]


@st.composite
def record(draw: st.DrawFn, *, t_format: bool) -> dict[str, str]:
    """A record that both paths accept, with up to two of its mapped fields at an edge (so
    that each edge is met in rows the block mapper would otherwise vouch for)."""
    born = dt.date(1900, 1, 1) + dt.timedelta(days=draw(st.integers(0, 120 * 365)))
    fine = {
        "attendance_id": draw(st.text(max_size=6)),
        "patient_national_id": draw(st.from_regex(r"[A-Za-z]{2}[ -]?[0-9]{3,6}-?[A-Za-z]?", fullmatch=True)),
        "patient_name": draw(st.sampled_from(["Kofi T", "Ana-Maria", "O'Neil", "x"])),
        "date_of_birth": born.isoformat(),
        "sex": draw(st.sampled_from(["F", "M", "U", ""])),
        "home_postcode": draw(st.sampled_from(["ZX1 1AA", "zx2 2bb", "ZX3 3CC"])),
        "arrival_time": _fine_moment(draw, t_format=t_format),
        "departure_time": _fine_moment(draw, t_format=False),
        "triage_code": draw(st.sampled_from(["T01", "t02", "T03"])),
        "clinical_notes": draw(st.sampled_from(["", "fine", 'said "no", left', "line\nbreak", "a,b"])),
    }
    edges = _edges(t_format)
    for column in draw(st.sets(st.sampled_from(sorted(edges)), max_size=2)):
        fine[column] = draw(st.sampled_from(edges[column]))
    for column in draw(st.sets(st.sampled_from(sorted(edges)), max_size=2)):
        fine[column] = draw(_padded(st.just(fine[column])))
    return fine


def _edges(t_format: bool) -> dict[str, list[str]]:
    """Per mapped column, values at an edge of what one path or the other takes."""
    return {
        "patient_national_id": ["", "--", "é123", "Ａ12", "ab\u0301c", "ß1", "a\x00b", "x.y/z_1", "x" * 40],  # noqa: RUF001
        "patient_name": ["", "Ana-María", "\x1c", "a b"],
        "date_of_birth": ["2000-02-30", "0000-01-01", "1800-01-01", "2020-1-5", "", "never", "2199-12-31"],
        "sex": ["f", "X", "é", " "],
        "home_postcode": ["ZX9 9ZZ", "", "ẞX1", "zx1  1aa"],
        "arrival_time": _odd_moments(t_format),
        "departure_time": [
            *_odd_moments(False),
            *["12", "-3.5", "1e3", "1_000", "nan", "inf", "+5.", ".5", "00012.500", "٣", "9" * 20, "-0"],
        ],
        "triage_code": ["T04", "", "t 01", "T01\x00"],
    }


def _csv(values: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(values)
    return out.getvalue()


@st.composite
def export_line(draw: st.DrawFn, *, t_format: bool) -> bytes:
    """One line (or record) of an export: mostly well written, sometimes broken in the ways
    that send a line to the csv module or end a block."""
    values = [draw(record(t_format=t_format))[column] for column in ED_HEADER]
    end = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    form = draw(
        st.sampled_from(["csv", "csv", "csv", "csv", "bare", "blank", "width", "quotes", "odd", "latin-1"])
    )
    if form == "csv":
        return (_csv(values) + end).encode()
    if form == "bare":  # fields joined as they are: stray quotes, commas, breaks stay in
        return (",".join(values) + end).encode()
    if form == "blank":
        return draw(st.sampled_from([b"\n", b"\r\n", b" \n", b",,,\n"]))
    if form == "width":
        cut = draw(st.integers(0, len(values) + 2))
        return (_csv(([*values, "x", "y"])[:cut]) + end).encode()
    if form == "quotes":
        quote = draw(st.sampled_from(['"a"b', 'a"b', '"a""b"', '"', '""', '"a\nb"', '"a\rb"', ' "a"']))
        values[draw(st.integers(0, len(values) - 1))] = quote
        return (",".join(values) + end).encode()
    if form == "odd":
        char = draw(st.sampled_from([*ODD, "\r"]))
        at = draw(st.integers(0, 3))
        line = _csv(values)
        return (line[:at] + char + line[at:] + end).encode()
    return (_csv(values) + end).encode("latin-1", "replace")


def _write(paths: Paths, lines: list[bytes]) -> Path:
    path = Path(paths.config.source.path)  # type: ignore[union-attr]
    path.write_bytes((",".join(ED_HEADER) + "\n").encode() + b"".join(lines))
    old = path.stat().st_mtime - 3_600  # settled: nobody is still writing it
    os.utime(path, (old, old))
    return path


Cut = tuple[str, dict[str, Any], int, list[list[Any]], list[tuple[int, str, str]]]


def _stretches(paths: Paths, mapper: Mapper, batch: int, resume: Any = None) -> tuple[list[Cut], PushSummary]:
    summary = PushSummary()
    source = CsvSource(paths.config.source)  # type: ignore[arg-type]
    with source.open(paths.config.source_columns(), resume) as stream:
        start = resume if resume is not None else stream.position()
        cuts = [
            (s.start, dict(s.end), s.count, s.columns, [(r.line, r.field, r.reason) for r in s.rejects])
            for s in iter_stretches(stream, mapper, batch, summary, start)
        ]
    return cuts, summary


def _same_both_ways(paths: Paths, batch: int) -> list[Cut]:
    by_blocks, summary_blocks = _stretches(paths, paths.blocks, batch)
    by_rows, summary_rows = _stretches(paths, paths.rows, batch)
    assert by_blocks == by_rows
    assert summary_blocks == summary_rows
    return by_rows


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Blocks of a few lines, so that files of a dozen lines cross several block boundaries."""
    monkeypatch.setattr(_source, "_BLOCK_BYTES", 700)
    monkeypatch.setattr(_source, "_MIN_BLOCK_BYTES", 150)
    return


SETTINGS = settings(
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
    max_examples=examples(0.5),
)


@SETTINGS
@given(data=st.data(), batch=st.integers(1, 6))
def test_any_export_cuts_the_same_stretches_both_ways(
    plain: Paths, small_blocks: None, data: st.DataObject, batch: int
) -> None:
    """An export of well-written, edge-valued and broken lines gives the same stretches, records,
    rejects and counts by blocks as by rows, and a resume from any cut continues the same."""
    lines = data.draw(st.lists(export_line(t_format=False), min_size=1, max_size=14))
    _write(plain, lines)
    cuts = _same_both_ways(plain, batch)
    for cut in cuts[:-1]:
        resumed_blocks = _stretches(plain, plain.blocks, batch, resume=cut[1])
        assert resumed_blocks == _stretches(plain, plain.rows, batch, resume=cut[1])


@SETTINGS
@given(data=st.data(), batch=st.integers(1, 6))
def test_other_field_shapes_map_the_same_both_ways(
    variant: Paths, small_blocks: None, data: st.DataObject, batch: int
) -> None:
    """Two id columns, a month contract, a T-and-seconds format and a number measure give the
    same records and rejects by blocks as by rows."""
    lines = data.draw(st.lists(export_line(t_format=True), min_size=1, max_size=14))
    _write(variant, lines)
    _same_both_ways(variant, batch)


def _fine_values(n: int, *, t_format: bool = False) -> dict[str, str]:
    arrival = dt.datetime(2024, 1, 1, 8, 0) + dt.timedelta(hours=7 * n)
    return {
        "attendance_id": f"A{n}",
        "patient_national_id": f"zz-{n % 37:06d}-a",
        "patient_name": "Kofi T",
        "date_of_birth": (dt.date(1950, 3, 1) + dt.timedelta(days=311 * n % 20_000)).isoformat(),
        "sex": "FMU"[n % 3],
        "home_postcode": ["ZX1 1AA", "zx2 2bb", "ZX3 3CC"][n % 3],
        "arrival_time": arrival.strftime("%Y-%m-%dT%H:%M:%S" if t_format else "%Y-%m-%d %H:%M"),
        "departure_time": (arrival + dt.timedelta(minutes=17 * n)).strftime("%Y-%m-%d %H:%M"),
        "triage_code": ["T01", "T02", "T03"][n % 3],
        "clinical_notes": ['said "no", left', "fine", "a,b"][n % 3],
    }


@pytest.mark.parametrize("t_format", [False, True], ids=["plain", "variant"])
def test_every_edge_value_alone_maps_the_same_both_ways(
    plain: Paths, variant: Paths, small_blocks: None, t_format: bool
) -> None:
    """Each edge value, bare and padded with each kind of space, in an otherwise fine record
    (where nothing else sends the row to the row mapper) gives the same record or reject."""
    paths = variant if t_format else plain
    lines = []
    for column, values in _edges(t_format).items():
        for value in values:
            for pad in ("", " ", "\t", "\x1c", "\xa0"):
                record = _fine_values(len(lines), t_format=t_format)
                record[column] = pad + value + pad
                lines.append((_csv([record[c] for c in ED_HEADER]) + "\n").encode())
    _write(paths, lines)
    cuts = _same_both_ways(paths, 7)
    rejected = {r[0] for cut in cuts for r in cut[4]}
    assert 0 < len(rejected) < len(lines)


def _clean_lines(count: int) -> list[bytes]:
    return [(_csv([_fine_values(n)[c] for c in ED_HEADER]) + "\r\n").encode() for n in range(count)]


def test_clean_export_is_read_and_mapped_in_blocks(plain: Paths) -> None:
    """A well-written export (CRLF, quoted notes) is read as blocks, and the block mapper vouches
    for every row of them, so no row of it goes through the row path."""
    _write(plain, _clean_lines(3_000))
    with CsvSource(plain.config.source).open(plain.config.source_columns()) as stream:  # type: ignore[arg-type]
        items = list(stream.blocks())
    assert items and all(isinstance(item, RowBlock) for item in items)
    assert sum(len(item.parsed.rows) for item in items) == 3_000  # type: ignore[union-attr]
    columnar = plain.blocks.columnar
    assert columnar is not None
    for item in items:
        fits, _ = columnar.map_block(item.parsed.columns)  # type: ignore[union-attr]
        assert all(fits)
    cuts = _same_both_ways(plain, 700)
    assert [cut[2] for cut in cuts] == [700, 700, 700, 700, 200]


def test_a_file_in_another_encoding_takes_the_row_path(plain: Paths) -> None:
    """Only UTF-8 is read in blocks: a Latin-1 export is read by the csv module, line by line."""
    _write(plain, _clean_lines(20))
    utf8 = plain.config.source
    assert isinstance(utf8, CsvSourceSettings)
    latin = dataclasses.replace(utf8, encoding="latin-1")
    with CsvSource(latin).open(plain.config.source_columns()) as stream:
        assert not any(isinstance(item, RowBlock) for item in stream.blocks())
    with CsvSource(utf8).open(plain.config.source_columns()) as stream:
        assert any(isinstance(item, RowBlock) for item in stream.blocks())


def test_a_field_over_the_csv_modules_size_limit_is_rejected_both_ways(plain: Paths) -> None:
    """The csv module refuses a field longer than csv.field_size_limit() and the row path rejects
    its line; Arrow has no such limit, so the block path must leave that line to the csv module."""
    lines = []
    for n in range(3):
        record = _fine_values(n)
        if n == 1:
            record["clinical_notes"] = "x" * (csv.field_size_limit() + 1)
        lines.append((_csv([record[c] for c in ED_HEADER]) + "\n").encode())
    _write(plain, lines)
    cuts = _same_both_ways(plain, 3)
    assert [cut[2] for cut in cuts] == [2] and [r[0] for r in cuts[0][4]] == [3]


@pytest.mark.parametrize(("delimiter", "quotechar"), [("§", '"'), (",", "«"), ("\x00", '"')])
def test_a_delimiter_or_quote_arrow_cannot_take_is_read_by_rows(
    tmp_path: Path, pki: agent_testkit.TestPki, agency_keys: AgencyKeys, delimiter: str, quotechar: str
) -> None:
    """The config takes any one character as delimiter and quote character, and the csv module
    reads them; Arrow's parser takes ASCII only, so such an export is read line by line."""
    paths = _paths(
        make_workspace(tmp_path / "agent", pki, agency_keys),
        "day",
        (('delimiter = ","', f"delimiter = {json.dumps(delimiter)}\nquotechar = {json.dumps(quotechar)}"),),
    )
    path = Path(paths.config.source.path)  # type: ignore[union-attr]
    rows = [[{**_fine_values(n), "clinical_notes": "fine"}[c] for c in ED_HEADER] for n in range(4)]
    path.write_text("\n".join(delimiter.join(row) for row in [ED_HEADER, *rows]) + "\n", encoding="utf-8")
    old = path.stat().st_mtime - 3_600
    os.utime(path, (old, old))
    cuts = _same_both_ways(paths, 3)
    assert sum(cut[2] for cut in cuts) == 4


def test_every_quoting_shape_alone_reads_the_same_both_ways(plain: Paths, small_blocks: None) -> None:
    """Each way of quoting a field, well-formed or not, in a mapped and in an unmapped column of an
    otherwise fine record, gives the same records and rejects by blocks as by rows: Arrow reads a
    line with quotes only when they are as the csv module reads them too."""
    shapes = ['"{v}"', '"{v}"x', 'x"{v}"', ' "{v}"', '"{v}"" "', '"{v}""x"""', '"{v},x"', '""{v}', '"{v}']
    lines = []
    for column in ("sex", "home_postcode", "clinical_notes"):
        for shape in shapes:
            record = _fine_values(len(lines))
            fields = [_csv([record[c]]) if c != column else shape.format(v=record[c]) for c in ED_HEADER]
            lines.append((",".join(fields) + "\n").encode())
    _write(plain, lines)
    cuts = _same_both_ways(plain, 4)
    rejected = {r[0] for cut in cuts for r in cut[4]}
    assert 0 < len(rejected) < len(lines)
