"""Records that do not fit are rejected, counted and listed by line and field; the run goes on,
and no identifier or value ever reaches the reject file, stdout or stderr."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from agent_testkit import ED_HEADER, RunningServer, Workspace, ed_row

from agents import ConfigError, CsvSource, SourceError, load_config
from agents._config import CsvSourceSettings
from agents._source import BadRow
from agents.cli import main

SECRET_IDS = [
    "SECRETID01",
    "SECRETID02",
    "SECRETID03",
    "SECRETID04",
    "SECRETID05",
    "SECRETID06",
    "SECRETID07",
]


def _line(values: dict[str, str]) -> bytes:
    return (",".join(values[c] for c in ED_HEADER) + "\n").encode()


def _dirty_file(path: Path) -> None:
    """Header (line 1), then a mix of good rows and one of each kind of bad row."""
    lines = [
        ",".join(ED_HEADER).encode() + b"\n",
        _line(ed_row(patient_national_id=SECRET_IDS[0])),  # 2 good
        _line(ed_row(patient_national_id=SECRET_IDS[1], arrival_time="2024-02-30 10:00")),  # 3 bad date
        _line(ed_row(patient_national_id=SECRET_IDS[2], home_postcode="QQ9 9QQ")),  # 4 unknown postcode
        _line(ed_row(patient_national_id="")),  # 5 empty id
        _line(ed_row(patient_national_id=SECRET_IDS[3]))[:-1] + b",extra\n",  # 6 too many fields
        _line(ed_row(patient_national_id=SECRET_IDS[4], patient_name="Ren\xe9e")).replace(
            b"Ren", b"Ren\xff"
        ),  # 7
        b"\n",  # 8 blank: skipped, not a record
        _line(
            ed_row(patient_national_id=SECRET_IDS[5], clinical_notes='"two\nlines"')
        ),  # 9-10 one good record
        _line(ed_row(patient_national_id=SECRET_IDS[6], sex="?")),  # 11 sex not in the map
    ]
    path.write_bytes(b"".join(lines))


def test_rejects_are_counted_listed_and_the_run_goes_on(
    workspace: Workspace, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each bad line is one reject with its line number and field; the good ones are all sent."""
    _dirty_file(workspace.data)

    assert main(["push", "--config", str(workspace.config)]) == 0

    captured = capsys.readouterr()
    assert captured.out.strip() == "read 8, sent 2, rejected 6, batches 1 (stored 1, duplicate 0)"
    with (workspace.state / "rejects.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["line", "field", "reason"]
    assert [(line, field) for line, field, _reason in rows[1:]] == [
        ("3", "event_date"),
        ("4", "district"),
        ("5", "subject"),
        ("6", "row"),
        ("7", "row"),
        ("11", "sex"),
    ]
    assert {line: reason for line, _field, reason in rows[1:]}["6"] == "wrong number of fields"
    assert len(server.servicer.all_records()) == 2


def test_no_identifier_or_value_leaks_into_rejects_or_output(
    workspace: Workspace, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reject file, stdout and stderr hold no identifier, name, postcode, date or note."""
    _dirty_file(workspace.data)

    assert main(["push", "--config", str(workspace.config)]) == 0

    captured = capsys.readouterr()
    reject_text = (workspace.state / "rejects.csv").read_text()
    for text in (reject_text, captured.out, captured.err):
        for secret in [
            *SECRET_IDS,
            "QQ9 9QQ",
            "2024-02-30",
            "Wilhelmina",
            "confidential",
            "extra",
            "1990-05-17",
        ]:
            assert secret not in text


def test_stream_reports_bad_rows_without_their_content(workspace: Workspace) -> None:
    """The CSV source yields BadRow for wrong field counts and undecodable bytes, with start lines."""
    _dirty_file(workspace.data)
    source = CsvSource(load_config(workspace.config).source)
    with source.open(["patient_national_id"]) as stream:
        rows = list(stream)
    assert [line for line, _row in rows] == [2, 3, 4, 5, 6, 7, 9, 11]
    assert rows[4][1] == BadRow("wrong number of fields")
    assert isinstance(rows[5][1], BadRow)
    assert "encoding" in rows[5][1].problem
    assert rows[6][1] == {"patient_national_id": SECRET_IDS[5]}  # a quoted field may span lines


def test_rows_carry_only_the_mapped_columns(workspace: Workspace) -> None:
    """Columns no mapping reads are dropped at the source."""
    workspace.write_rows([ed_row()])
    config = load_config(workspace.config)
    with CsvSource(config.source).open(config.source_columns()) as stream:
        [(_line_no, row)] = list(stream)
    assert isinstance(row, dict)
    assert set(row) == set(config.source_columns())
    assert "patient_name" not in row
    assert "clinical_notes" not in row


def test_missing_mapped_column_is_a_config_error(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """A header without a mapped column stops with exit 2 naming the column, before any network call."""
    header = [c for c in ED_HEADER if c != "triage_code"]
    workspace.data.write_text(",".join(header) + "\n")

    assert main(["push", "--config", str(workspace.config)]) == 2

    assert "column 'triage_code' is missing from the header row" in capsys.readouterr().err


def test_duplicate_mapped_column_is_a_config_error(workspace: Workspace) -> None:
    """A mapped column named twice in the header is ambiguous and refused."""
    workspace.data.write_text(",".join([*ED_HEADER, "sex"]) + "\n")
    config = load_config(workspace.config)
    with (
        pytest.raises(ConfigError, match="column 'sex' appears more than once"),
        CsvSource(config.source).open(config.source_columns()),
    ):
        pass


def test_missing_source_file_exits_3(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """A source file that cannot be opened is a SourceError: exit 3, naming the file."""
    assert main(["push", "--config", str(workspace.config)]) == 3
    assert "ed_visits.csv: cannot open the source file" in capsys.readouterr().err


def test_empty_source_file(workspace: Workspace) -> None:
    """A file without even a header row is a SourceError."""
    workspace.data.write_text("")
    config = load_config(workspace.config)
    with pytest.raises(SourceError, match="the file is empty"), CsvSource(config.source).open(["sex"]):
        pass


def test_byte_order_mark_and_other_delimiters(workspace: Workspace) -> None:
    """A BOM before the header is ignored, and a configured ';' delimiter and latin-1 encoding are used."""
    workspace.config.write_text(
        workspace.config.read_text()
        .replace('delimiter = ","', 'delimiter = ";"')
        .replace('encoding = "utf-8"', 'encoding = "latin-1"')
    )
    row = ed_row(patient_name="Ren\u00e9e")
    workspace.data.write_bytes(
        (";".join(ED_HEADER) + "\n" + ";".join(row[c] for c in ED_HEADER) + "\n").encode("latin-1")
    )
    config = load_config(workspace.config)
    with CsvSource(config.source).open(["patient_national_id", "sex"]) as stream:
        assert list(stream) == [(2, {"patient_national_id": "AB123456C", "sex": "F"})]

    workspace.data.write_bytes("\ufeff".encode() + (",".join(ED_HEADER) + "\n").encode())
    with CsvSource(CsvSourceSettings(path=workspace.data)).open(["attendance_id"]) as stream:
        assert list(stream) == []
