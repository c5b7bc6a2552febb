"""The CSV source: configurable dialect and encoding, and positions a later run resumes from exactly."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from agent_testkit import Workspace
from hypothesis import given, settings
from hypothesis import strategies as st

from agents import ConfigError, SourceError, load_config
from agents._config import CsvSourceSettings
from agents._source import BadRow, CsvSource, row_builder

COLUMNS = ["id", "note"]


def _write(path: Path, lines: list[str], encoding: str = "utf-8") -> None:
    path.write_bytes("".join(lines).encode(encoding))


def _rows(path: Path, resume: dict[str, object] | None = None, **options: str) -> list[object]:
    with CsvSource(CsvSourceSettings(path=path, **options)).open(COLUMNS, resume) as stream:
        return list(stream)


# a mix of plain rows, quoted commas and quoted line breaks, and rows that are not well-formed
_RECORD = st.sampled_from(
    ["{i},plain\n", '{i},"a, quoted comma"\n', '{i},"two\nlines"\n', "{i},too,many\n", '{i},"x""y"\n']
)


@settings(max_examples=40, deadline=None)
@given(records=st.lists(_RECORD, min_size=1, max_size=12), cut=st.integers(min_value=0, max_value=12))
def test_resuming_from_a_position_yields_exactly_the_rows_after_it(
    tmp_path_factory: pytest.TempPathFactory, records: list[str], cut: int
) -> None:
    """Whatever the rows (quoted line breaks, bad rows), resuming after row k yields rows k+1.. with
    the same line numbers as an uninterrupted read."""
    path = tmp_path_factory.mktemp("csv") / "export.csv"
    _write(path, ["id,note\n", *(r.format(i=i) for i, r in enumerate(records))])
    everything = _rows(path)
    cut = min(cut, len(everything))
    with CsvSource(CsvSourceSettings(path=path)).open(COLUMNS) as stream:
        for _ in range(cut):
            next(iter(stream))
        position = stream.position()

    assert _rows(path, position) == everything[cut:]


def test_a_rewritten_file_is_refused_on_resume(tmp_path: Path) -> None:
    """Changing bytes before the saved position stops the run instead of sending the wrong rows."""
    path = tmp_path / "export.csv"
    _write(path, ["id,note\n", "1,a\n", "2,b\n"])
    with CsvSource(CsvSourceSettings(path=path)).open(COLUMNS) as stream:
        list(stream)
        position = stream.position()
    _write(path, ["id,note\n", "1,A\n", "2,b\n", "3,c\n"])

    with pytest.raises(SourceError, match="rewritten or replaced"):
        _rows(path, position)


def test_a_truncated_file_is_refused_on_resume(tmp_path: Path) -> None:
    """A file now shorter than the saved position cannot be the one that was read."""
    path = tmp_path / "export.csv"
    _write(path, ["id,note\n", "1,a\n", "2,b\n"])
    with CsvSource(CsvSourceSettings(path=path)).open(COLUMNS) as stream:
        list(stream)
        position = stream.position()
    _write(path, ["id,note\n"])

    with pytest.raises(SourceError, match="rewritten or replaced"):
        _rows(path, position)


def test_an_appended_file_resumes_after_the_old_end(tmp_path: Path) -> None:
    """Rows appended to the export are the only ones a resumed read yields, with their line numbers."""
    path = tmp_path / "export.csv"
    _write(path, ["id,note\n", "1,a\n"])
    with CsvSource(CsvSourceSettings(path=path)).open(COLUMNS) as stream:
        list(stream)
        position = stream.position()
    with path.open("a", encoding="utf-8") as handle:
        handle.write("2,b\n3,c\n")

    assert _rows(path, position) == [(3, {"id": "2", "note": "b"}), (4, {"id": "3", "note": "c"})]


def test_quotechar_and_delimiter_are_configurable(tmp_path: Path) -> None:
    """A ';'-separated export quoting with "'" reads into the right fields."""
    path = tmp_path / "export.csv"
    _write(path, ["id;note\n", "1;'a; b'\n"])

    assert _rows(path, delimiter=";", quotechar="'") == [(2, {"id": "1", "note": "a; b"})]


def test_cp1252_text_decodes(tmp_path: Path) -> None:
    """A Windows-1252 export (curly quotes, accents) reads as text under encoding = cp1252."""
    path = tmp_path / "export.csv"
    _write(path, ["id,note\n", "1,\u201cRen\u00e9e\u201d\n"], encoding="cp1252")

    assert _rows(path, encoding="cp1252") == [(2, {"id": "1", "note": "\u201cRen\u00e9e\u201d"})]


def test_a_line_in_another_encoding_is_one_reject(tmp_path: Path) -> None:
    """Latin-1 bytes in a UTF-8 export reject that record only; the next one reads normally."""
    path = tmp_path / "export.csv"
    path.write_bytes(b"id,note\n1,Ren\xe9e\n2,ok\n")

    rows = _rows(path)
    assert rows[0] == (2, BadRow("bytes that are not valid text in the configured encoding"))
    assert rows[1] == (3, {"id": "2", "note": "ok"})


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "utf-16-le"])
def test_encodings_that_do_not_keep_ascii_are_refused_at_start_up(
    workspace: Workspace, encoding: str
) -> None:
    """UTF-16/32 exports are refused by name in the config check (line ends are found in bytes)."""
    workspace.config.write_text(
        workspace.config.read_text().replace('encoding = "utf-8"', f'encoding = "{encoding}"')
    )
    with pytest.raises(ConfigError, match=r"source\.encoding: must write ASCII as ASCII"):
        load_config(workspace.config)


def test_quotechar_must_differ_from_the_delimiter(workspace: Workspace) -> None:
    """A quote character equal to the delimiter is a config error naming source.quotechar."""
    workspace.config.write_text(
        workspace.config.read_text().replace('delimiter = ","', 'delimiter = "\'"\nquotechar = "\'"')
    )
    with pytest.raises(ConfigError, match=r"source\.quotechar: must differ from the delimiter"):
        load_config(workspace.config)


def test_a_stray_quote_rejects_one_line_not_the_rest_of_the_file(tmp_path: Path) -> None:
    """An unclosed quote would swallow the lines after it into one field; only its own line is
    rejected and every following record is read."""
    path = tmp_path / "export.csv"
    _write(path, ["id,note\n", '1,"oops\n', *(f"{i},fine\n" for i in range(2, 502))])

    rows = _rows(path)

    assert rows[0] == (2, BadRow("the line is not well-formed CSV (an unclosed quote?)"))
    assert [r for r in rows if isinstance(r[1], BadRow)] == [rows[0]]
    assert len(rows) == 501
    assert rows[-1] == (502, {"id": "501", "note": "fine"})


def test_a_stray_quote_closed_lines_later_loses_nothing_in_between(tmp_path: Path) -> None:
    """A stray quote closed by a later quoted field rejects only its own line; the lines it had
    swallowed are read as the records they are."""
    path = tmp_path / "export.csv"
    _write(path, ["id,note\n", '1,"ab\n', "2,fine\n", '3,"quoted"\n', "4,fine\n"])

    rows = _rows(path)

    assert isinstance(rows[0][1], BadRow)
    assert rows[1:] == [
        (3, {"id": "2", "note": "fine"}),
        (4, {"id": "3", "note": "quoted"}),
        (5, {"id": "4", "note": "fine"}),
    ]


def test_an_unfinished_last_line_of_a_file_being_written_waits_for_the_next_run(tmp_path: Path) -> None:
    """A last line without its line break in a file just written is not read (it may be half a
    record); the position stays before it, and it is read once complete."""
    path = tmp_path / "export.csv"
    _write(path, ["id,note\n", "1,a\n", "2,bra"])
    with CsvSource(CsvSourceSettings(path=path)).open(COLUMNS) as stream:
        assert list(stream) == [(2, {"id": "1", "note": "a"})]
        position = stream.position()
    with path.open("a", encoding="utf-8") as handle:
        handle.write("vo\n")

    assert _rows(path, position) == [(3, {"id": "2", "note": "bravo"})]


def test_a_settled_file_without_a_final_line_break_is_read_whole(tmp_path: Path) -> None:
    """An export nobody is writing to any more (spreadsheet tools often omit the last line break)
    has its last record read."""
    path = tmp_path / "export.csv"
    _write(path, ["id,note\n", "1,a\n", "2,b"])
    old = time.time() - 60
    os.utime(path, (old, old))

    assert _rows(path)[-1] == (3, {"id": "2", "note": "b"})


def test_rows_hold_the_mapped_columns_by_name_whatever_the_names(tmp_path: Path) -> None:
    """Each row maps every requested column, in any order and with any header text (quotes,
    braces, code-like names), to its own field and to nothing else."""
    header = ['x"}, __import__("os")', "plain", "{b}"]
    path = tmp_path / "odd.csv"
    _write(path, ['"x""}, __import__(""os"")",plain,{b}\n', "1,2,3\n"])

    with CsvSource(CsvSourceSettings(path=path)).open([header[2], header[0]]) as stream:
        rows = [row for _line, row in stream]

    assert rows == [{header[2]: "3", header[0]: "1"}]


def test_row_builder_of_one_column() -> None:
    """One mapped column gives a one-entry row."""
    assert row_builder([("id", 1)])(["a", "b", "c"]) == {"id": "b"}
