"""The SQL database source: incremental reads by a watermark, on real SQLite files and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from pathlib import Path

import pytest
from agent_testkit import ED_HEADER, RunningServer, Workspace, ed_row
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

from agents import ConfigError, load_config
from agents._config import SqlSourceSettings
from agents._source import BadRow, Position, Row, open_source
from agents._sql_source import EMPTY_WATERMARK, SqlSource
from agents._state import encode_position
from agents.cli import main
from agents.errors import SourceChangedError, SourceError
from gateway.store.testing import fresh_postgres_schema

POSTGRES_URL = os.environ.get(
    "DATASHARE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


# --- helpers -----------------------------------------------------------------------------------


def _sqlite(path: Path, rows: Sequence[tuple[object, ...]], *, columns: str = "id, name") -> str:
    """A SQLite file with table `visits`; returns its SQLAlchemy URL."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS visits (id INTEGER, name TEXT, ts TEXT)")
        marks = ", ".join("?" for _ in columns.split(","))
        db.executemany(f"INSERT INTO visits ({columns}) VALUES ({marks})", rows)
    db.close()
    return f"sqlite:///{path}"


def _source(url: str, **overrides: object) -> SqlSource:
    settings: dict[str, object] = {"query": "SELECT * FROM visits", "watermark_column": "id", "url": url}
    settings.update(overrides)
    return SqlSource(SqlSourceSettings(**settings))  # type: ignore[arg-type]


def _read(
    source: SqlSource, columns: Sequence[str], resume: Position | None = None, stop_after: int | None = None
) -> tuple[list[Row | BadRow], Position]:
    """Rows read (all, or the first `stop_after`) and the position after them, through JSON as stored."""
    rows: list[Row | BadRow] = []
    with source.open(columns, resume) as stream:
        for _, row in stream:
            rows.append(row)
            if stop_after is not None and len(rows) == stop_after:
                break
        position = stream.position()
    return rows, json.loads(encode_position(position))


def _names(rows: Sequence[Row | BadRow]) -> list[str]:
    return [row["name"] for row in rows if not isinstance(row, BadRow)]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema; the URL names a unique application_name to find the session by."""
    with fresh_postgres_schema(POSTGRES_URL, prefix="sqlsrc") as url:
        app = f"agent_sql_{secrets.token_hex(4)}"
        yield make_url(url).update_query_dict({"application_name": app}).render_as_string(hide_password=False)


def _pg(url: str) -> Engine:
    return create_engine(url, poolclass=NullPool)


def _reading_session(admin: Engine, url: str) -> tuple[int, str]:
    """(pid, last statement) of the source's connection, found by its application_name."""
    app = make_url(url).query["application_name"]
    with admin.connect() as conn:
        row = conn.execute(
            text(
                "SELECT pid, query FROM pg_stat_activity WHERE application_name = :app AND pid <> pg_backend_pid()"
            ),
            {"app": app},
        ).one()
    return int(row[0]), str(row[1])


# --- incremental reads (SQLite) ----------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 4, 9])
def test_resume_after_the_kth_row_yields_exactly_the_rest(tmp_path: Path, k: int) -> None:
    """A first read yields every row in watermark order; resuming at its position after row k yields the rest."""
    url = _sqlite(tmp_path / "db.sqlite3", [(i, f"n{i}") for i in (7, 3, 12, 5, 20, 1, 9, 15, 30, 2)])
    source = _source(url)

    everything, _ = _read(source, ["name"])
    first, position = _read(source, ["name"], stop_after=k)
    rest, _ = _read(source, ["name"], position)

    assert _names(everything) == [f"n{i}" for i in (1, 2, 3, 5, 7, 9, 12, 15, 20, 30)]
    assert _names(first) + _names(rest) == _names(everything)
    assert len(_names(rest)) == 10 - k


def test_only_rows_inserted_after_a_run_are_read_again(tmp_path: Path) -> None:
    """After a full read, a resumed read yields nothing, then exactly the rows inserted since."""
    path = tmp_path / "db.sqlite3"
    source = _source(_sqlite(path, [(i, f"n{i}") for i in range(1, 6)]))
    _, position = _read(source, ["name"])
    nothing, same = _read(source, ["name"], position)
    _sqlite(path, [(i, f"n{i}") for i in range(6, 9)])

    new, _ = _read(source, ["name"], same)

    assert (nothing, same) == ([], position)
    assert _names(new) == ["n6", "n7", "n8"]


def test_ordinals_continue_across_resumed_reads(tmp_path: Path) -> None:
    """Row ordinals go on counting from the resumed position, so rejects of two runs never share one."""
    source = _source(_sqlite(tmp_path / "db.sqlite3", [(i, f"n{i}") for i in range(1, 8)]))
    _, position = _read(source, ["name"], stop_after=3)
    with source.open(["name"], position) as stream:
        ordinals = [ordinal for ordinal, _ in stream]
    assert ordinals == [4, 5, 6, 7]


def test_tiebreak_resumes_between_rows_with_the_same_watermark(tmp_path: Path) -> None:
    """With equal timestamps across the cut, the tiebreak column makes the resume skip and repeat nothing."""
    rows = [(i, f"n{i}", f"2024-03-0{1 + i // 4} 10:00:00") for i in range(1, 12)]  # four per timestamp
    url = _sqlite(tmp_path / "db.sqlite3", rows, columns="id, name, ts")
    source = _source(url, watermark_column="ts", tiebreak_column="id")

    for k in range(1, 11):
        first, position = _read(source, ["name"], stop_after=k)
        rest, _ = _read(source, ["name"], position)
        assert _names(first) + _names(rest) == [f"n{i}" for i in range(1, 12)]


def test_a_repeated_watermark_without_tiebreak_stops_the_read(tmp_path: Path) -> None:
    """Two rows with one watermark value stop the read with a SourceError that points at tiebreak_column."""
    source = _source(_sqlite(tmp_path / "db.sqlite3", [(1, "a"), (2, "b"), (2, "c")]))
    with pytest.raises(SourceError, match=r"source\.watermark_column: two rows share.*tiebreak_column"):
        _read(source, ["name"])


def test_a_null_watermark_is_a_rejected_row(tmp_path: Path) -> None:
    """A row without a watermark value is a BadRow; the rows around it are read and the position is theirs."""
    source = _source(_sqlite(tmp_path / "db.sqlite3", [(1, "a"), (None, "b"), (2, "c")]))
    rows, position = _read(source, ["name"])
    assert BadRow(EMPTY_WATERMARK) in rows
    assert _names(rows) == ["a", "c"]
    assert position["after"] == ["int", 2]


def test_only_the_columns_the_mapping_reads_are_yielded(tmp_path: Path) -> None:
    """Rows carry the mapping's columns only: the watermark column is read but does not travel on."""
    source = _source(_sqlite(tmp_path / "db.sqlite3", [(1, "a", "2024-01-01")], columns="id, name, ts"))
    rows, _ = _read(source, ["name"])
    assert rows == [{"name": "a"}]


def test_null_watermark_rows_are_rejected_once_not_every_run(tmp_path: Path) -> None:
    """A table holding only NULL-watermark rows rejects them on the first read; the resumed reads
    that follow yield nothing, then just the new rows (the reject count does not grow each run)."""
    path = tmp_path / "db.sqlite3"
    source = _source(_sqlite(path, [(None, "a"), (None, "b")]))
    first, position = _read(source, ["name"])
    again, position = _read(source, ["name"], position)
    _sqlite(path, [(1, "c")])
    new, _ = _read(source, ["name"], position)
    assert first == [BadRow(EMPTY_WATERMARK), BadRow(EMPTY_WATERMARK)]
    assert again == []
    assert new == [{"name": "c"}]


def test_a_null_tiebreak_is_rejected_once(tmp_path: Path) -> None:
    """A row whose tiebreak is NULL, after the position, is rejected on the first read only."""
    rows = [(1, "a", "2024-03-01"), (None, "b", "2024-03-02")]
    url = _sqlite(tmp_path / "db.sqlite3", rows, columns="id, name, ts")
    source = _source(url, watermark_column="ts", tiebreak_column="id")
    first, position = _read(source, ["name"])
    again, _ = _read(source, ["name"], position)
    assert first == [{"name": "a"}, BadRow("tiebreak column is empty")]
    assert again == []


def test_the_stream_header_lists_every_column_of_the_query(tmp_path: Path) -> None:
    """header() gives all the query's result columns, read or not, so preview can say what stays."""
    source = _source(_sqlite(tmp_path / "db.sqlite3", [(1, "a", "x")], columns="id, name, ts"))
    with source.open(["name"]) as stream:
        assert stream.header() == ("id", "name", "ts")


def test_a_repeated_watermark_is_a_source_change_the_service_does_not_retry(tmp_path: Path) -> None:
    """Two rows sharing a watermark raise SourceChangedError: retrying every interval cannot fix it."""
    source = _source(_sqlite(tmp_path / "db.sqlite3", [(1, "a"), (1, "b")]))
    with pytest.raises(SourceChangedError):
        _read(source, ["name"])


def test_a_value_error_while_reading_sqlite_rows_never_quotes_the_value(tmp_path: Path) -> None:
    """A row that makes the query fail (a JSON function on a value that is not JSON) is a
    SourceError with the error class only: the value does not appear."""
    path = tmp_path / "db.sqlite3"
    _sqlite(path, [(1, "fine"), (2, "SECRET-ID-77{")])
    source = _source(f"sqlite:///{path}", query="SELECT id, json_extract(name, '$.x') AS name FROM visits")
    with pytest.raises(SourceError) as caught:
        _read(source, ["name"])
    assert "SECRET-ID-77" not in str(caught.value)
    assert "OperationalError" in str(caught.value)


# --- columns, configuration, errors ------------------------------------------------------------


def test_a_column_missing_from_the_query_is_a_config_error_naming_it(tmp_path: Path) -> None:
    """A mapped column the query does not return stops before any row with a ConfigError naming it."""
    source = _source(_sqlite(tmp_path / "db.sqlite3", [(1, "a")]), query="SELECT id, name FROM visits")
    with pytest.raises(ConfigError, match=r"column 'ts', which the mapping reads, is not a column"):
        _read(source, ["name", "ts"])


def test_a_watermark_column_missing_from_the_query_is_a_config_error(tmp_path: Path) -> None:
    """A watermark column the query does not return is named with its key."""
    source = _source(_sqlite(tmp_path / "db.sqlite3", [(1, "a")]), watermark_column="seq")
    with pytest.raises(ConfigError, match=r"source\.watermark_column: column 'seq' is not a column"):
        _read(source, ["name"])


def test_sql_the_database_refuses_is_a_source_error(tmp_path: Path) -> None:
    """A query naming a table that does not exist is a SourceError naming the source and the problem."""
    source = _source(_sqlite(tmp_path / "db.sqlite3", [(1, "a")]), query="SELECT * FROM nowhere")
    with pytest.raises(SourceError, match=r"^sql source sqlite:///.*refused the query.*no such table"):
        _read(source, ["name"])


def test_a_missing_sqlite_file_is_a_source_error_and_is_not_created(tmp_path: Path) -> None:
    """A SQLite URL to a file that does not exist fails instead of reading a new empty database."""
    missing = tmp_path / "missing.sqlite3"
    with pytest.raises(SourceError, match="database file does not exist"):
        _read(_source(f"sqlite:///{missing}"), ["name"])
    assert not missing.exists()


def test_an_unreachable_database_is_a_source_error_without_the_password() -> None:
    """A refused connection says so, names the host, and masks the password everywhere."""
    source = _source("postgresql+psycopg://agent:Sw0rdfish-7@127.0.0.1:1/agency")
    with pytest.raises(SourceError, match="cannot connect to the database") as caught:
        _read(source, ["name"])
    assert "Sw0rdfish-7" not in str(caught.value)
    assert "agent:***@127.0.0.1:1" in str(caught.value)
    assert "Sw0rdfish-7" not in source.name


def test_the_name_changes_with_the_query_but_not_with_the_password() -> None:
    """A new query is a new source; a rotated password is the same source."""
    one = _source("postgresql+psycopg://agent:old@db/agency")
    rotated = _source("postgresql+psycopg://agent:new@db/agency")
    other_query = _source("postgresql+psycopg://agent:old@db/agency", query="SELECT * FROM visits_2024")
    assert one.name == rotated.name
    assert one.name != other_query.name
    assert one.name.startswith("sql:postgresql+psycopg://agent:***@db/agency#")


def test_a_stored_position_of_another_kind_is_refused(tmp_path: Path) -> None:
    """A CSV position handed to a SQL source stops the read instead of guessing."""
    source = _source(_sqlite(tmp_path / "db.sqlite3", [(1, "a")]))
    with pytest.raises(SourceError, match="saved read position does not belong"):
        _read(source, ["name"], {"offset": 10, "line": 2, "fingerprint": "x"})


SQL_SOURCE = """\
[source]
type = "sql"
{url_line}
query = "SELECT * FROM ed_visits"
watermark_column = "seq"
fetch_size = 500
"""


def _use_sql_source(workspace: Workspace, url_line: str, *, batch_size: int = 1000) -> Path:
    config = workspace.write_config(batch_size=batch_size).read_text(encoding="utf-8")
    config, count = re.subn(r"\[source\]\n(?:[^\n]+\n)*", SQL_SOURCE.format(url_line=url_line), config)
    assert count == 1
    workspace.config.write_text(config, encoding="utf-8")
    return workspace.config


def test_config_loads_a_sql_source(workspace: Workspace) -> None:
    """type = "sql" loads with its defaults, a relative SQLite file resolved against the config's folder."""
    _use_sql_source(workspace, 'url = "sqlite:///data/ed.sqlite3"')
    settings = load_config(workspace.config).source
    database = workspace.root.resolve() / "data" / "ed.sqlite3"
    assert settings == SqlSourceSettings(
        query="SELECT * FROM ed_visits", watermark_column="seq", url=f"sqlite:///{database}", fetch_size=500
    )
    assert isinstance(open_source(settings), SqlSource)


@pytest.mark.parametrize(
    ("url_line", "message"),
    [
        ('url = "sqlite:///x"\nurl_env = "AGENT_DB_URL"', r"source\.url: give exactly one of url"),
        ('url = "not a url at all with pw hunter2"', r"source\.url: is not a SQLAlchemy URL"),
        ('url = "nosuchdb://u:hunter2@h/d"', r"source\.url: names a database dialect"),
        ('url = "postgresql+nosuchdriver://u:hunter2@h/d"', r"source\.url: names a database dialect"),
        ('url_env = "not a name"', r"source\.url_env: must be an environment variable name"),
    ],
)
def test_a_bad_url_is_a_config_error_without_the_password(
    workspace: Workspace, url_line: str, message: str
) -> None:
    """Each wrong url setting names its key and never repeats the URL's password."""
    _use_sql_source(workspace, url_line)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(workspace.config)
    assert "hunter2" not in str(caught.value)


def test_a_query_that_is_not_a_select_is_a_config_error(workspace: Workspace) -> None:
    """source.query must be a SELECT: anything else is refused at load time."""
    config = _use_sql_source(workspace, 'url = "sqlite:///x"')
    config.write_text(
        config.read_text(encoding="utf-8").replace("SELECT * FROM ed_visits", "DELETE FROM ed_visits"),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"source\.query: must be one SELECT"):
        load_config(config)


def test_url_env_is_read_from_the_environment_when_the_source_is_built(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """url_env names a variable read by open_source: unset is a ConfigError naming it, set gives the source."""
    _use_sql_source(workspace, 'url_env = "AGENT_TEST_DB_URL"')
    settings = load_config(workspace.config).source
    monkeypatch.delenv("AGENT_TEST_DB_URL", raising=False)
    with pytest.raises(
        ConfigError, match=r"source\.url_env: environment variable AGENT_TEST_DB_URL is not set"
    ):
        open_source(settings)
    monkeypatch.setenv("AGENT_TEST_DB_URL", _sqlite(tmp_path / "db.sqlite3", [(1, "a")]))
    assert open_source(settings).name.startswith(f"sql:sqlite:///{tmp_path}")


# --- PostgreSQL --------------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_values_arrive_as_iso_text(pg_url: str) -> None:
    """Dates, timestamps, numerics, booleans and NULL reach the mapper as the ISO text the docs promise."""
    admin = _pg(pg_url)
    with admin.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE v (id bigint, d date, ts timestamp, n numeric(10,2), f double precision, b boolean, e text)"
            )
        )
        conn.execute(
            text("INSERT INTO v VALUES (1, '2024-03-05', '2024-03-05 07:08:09.123', 12.50, 2.5, true, NULL)")
        )
    admin.dispose()
    source = _source(pg_url, query="SELECT * FROM v")
    rows, position = _read(source, ["d", "ts", "n", "f", "b", "e"])
    assert rows == [
        {"d": "2024-03-05", "ts": "2024-03-05 07:08:09", "n": "12.50", "f": "2.5", "b": "true", "e": ""}
    ]
    assert position["after"] == ["int", 1]


@pytest.mark.postgres
def test_postgres_timestamp_watermark_resumes_with_its_type(pg_url: str) -> None:
    """A timestamp watermark with a tiebreak is stored as typed ISO text and resumes exactly after the cut."""
    admin = _pg(pg_url)
    with admin.begin() as conn:
        conn.execute(text("CREATE TABLE v (id int PRIMARY KEY, at timestamptz NOT NULL, name text)"))
        conn.execute(
            text(
                "INSERT INTO v SELECT g, timestamptz '2024-03-01 00:00:00.5+00' + (g / 3) * interval '1 day',"
                " 'n' || g FROM generate_series(1, 10) g"
            )
        )
    admin.dispose()
    source = _source(pg_url, query="SELECT * FROM v", watermark_column="at", tiebreak_column="id")

    first, position = _read(source, ["name"], stop_after=4)
    rest, _ = _read(source, ["name"], position)

    after = position["after"]
    assert isinstance(after, list)
    assert after[0] == "datetime"
    assert datetime.fromisoformat(after[1]).microsecond == 500000
    assert position["tiebreak"] == ["int", 4]
    assert _names(first) + _names(rest) == [f"n{i}" for i in range(1, 11)]


@pytest.mark.postgres
def test_postgres_date_watermark_is_stored_with_its_type(pg_url: str) -> None:
    """A date watermark goes into the position tagged 'date' and binds back as a date."""
    admin = _pg(pg_url)
    with admin.begin() as conn:
        conn.execute(text("CREATE TABLE v (day date PRIMARY KEY, name text)"))
        conn.execute(
            text("INSERT INTO v SELECT date '2024-01-01' + g, 'n' || g FROM generate_series(0, 4) g")
        )
    admin.dispose()
    source = _source(pg_url, query="SELECT * FROM v", watermark_column="day")
    _, position = _read(source, ["name"], stop_after=2)
    rest, _ = _read(source, ["name"], position)
    assert position["after"] == ["date", date(2024, 1, 2).isoformat()]
    assert _names(rest) == ["n2", "n3", "n4"]


@pytest.mark.postgres
def test_postgres_streams_with_a_server_side_cursor_of_fetch_size(pg_url: str) -> None:
    """200k rows stream through a server-side cursor that fetches at most fetch_size rows at a time."""
    admin = _pg(pg_url)
    with admin.begin() as conn:
        conn.execute(
            text("CREATE TABLE v AS SELECT g AS id, 'n' || g AS name FROM generate_series(1, 200000) g")
        )
    source = _source(pg_url, query="SELECT * FROM v", fetch_size=700)
    count = 0
    try:
        with source.open(["name"]) as stream:
            for _ in stream:
                count += 1
                if count == 1000:
                    _, statement = _reading_session(admin, pg_url)
            position = stream.position()
    finally:
        admin.dispose()
    fetched = re.fullmatch(r'FETCH FORWARD (\d+) FROM "?[\w]+"?', statement)
    assert fetched is not None
    assert int(fetched.group(1)) <= 700
    assert count == 200000
    assert position["after"] == ["int", 200000]


@pytest.mark.postgres
@pytest.mark.parametrize("fetch_size", [1, 1000])
def test_postgres_a_cast_failing_on_a_row_never_quotes_the_value(pg_url: str, fetch_size: int) -> None:
    """A CAST that fails on one row (PostgreSQL's message quotes the value) is a SourceError with
    the class and SQLSTATE only, at the first fetch or after some rows were read."""
    admin = _pg(pg_url)
    with admin.begin() as conn:
        conn.execute(text("CREATE TABLE v (id int, raw text)"))
        conn.execute(text("INSERT INTO v VALUES (1, '10'), (2, '11'), (3, 'SECRET-ID-77')"))
    admin.dispose()
    source = _source(pg_url, query="SELECT id, CAST(raw AS integer) AS n FROM v", fetch_size=fetch_size)
    with pytest.raises(SourceError) as caught:
        _read(source, ["n"])
    message = str(caught.value)
    assert "SECRET-ID-77" not in message
    assert "22P02" in message  # invalid_text_representation


@pytest.mark.postgres
def test_postgres_session_has_keepalives_and_a_statement_timeout(pg_url: str) -> None:
    """The reading session runs with TCP keepalives on and a 30-minute statement timeout."""
    admin = _pg(pg_url)
    with admin.begin() as conn:
        conn.execute(text("CREATE TABLE v (id int, name text)"))
        conn.execute(text("INSERT INTO v VALUES (1, 'a')"))
    source = _source(
        pg_url,
        query="SELECT id, current_setting('statement_timeout') AS name FROM v",
    )
    try:
        rows, _ = _read(source, ["name"])
    finally:
        admin.dispose()
    engine = source._engine()  # the engine each read builds, to see libpq's side of the session
    try:
        with engine.connect() as conn:
            parameters = conn.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
    finally:
        engine.dispose()
    assert rows == [{"name": "30min"}]
    assert (parameters["keepalives"], parameters["keepalives_idle"]) == ("1", "30")


@pytest.mark.postgres
def test_postgres_connection_killed_mid_read_is_a_source_error(pg_url: str) -> None:
    """pg_terminate_backend on the reading session after the first fetch ends the read with a clear SourceError."""
    admin = _pg(pg_url)
    with admin.begin() as conn:
        conn.execute(
            text("CREATE TABLE v AS SELECT g AS id, 'n' || g AS name FROM generate_series(1, 5000) g")
        )
    source = _source(pg_url, query="SELECT * FROM v", fetch_size=100)
    read: list[object] = []

    def read_and_kill() -> None:
        with source.open(["name"]) as stream:
            for row in stream:
                read.append(row)
                if len(read) == 1:
                    pid, _ = _reading_session(admin, pg_url)
                    with admin.connect() as conn:
                        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    try:
        with pytest.raises(SourceError) as caught:
            read_and_kill()
    finally:
        admin.dispose()
    message = str(caught.value)
    assert message.startswith("sql source postgresql+psycopg://postgres@127.0.0.1")
    assert "connection to the database was lost while reading rows" in message
    assert len(read) < 5000
    assert "\n" not in message


# --- end to end --------------------------------------------------------------------------------


def _ed_table(path: Path, first: int, count: int) -> None:
    columns = ", ".join(ED_HEADER)
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE IF NOT EXISTS ed_visits (seq INTEGER PRIMARY KEY, {columns})")
        rows = [
            ed_row(
                attendance_id=f"A{i}",
                patient_national_id=f"QQ{i:06d}C",
                arrival_time=f"2024-03-{1 + i % 28:02d} 10:00",
                departure_time=f"2024-03-{1 + i % 28:02d} 12:00",
            )
            for i in range(first, first + count)
        ]
        db.executemany(
            f"INSERT INTO ed_visits ({columns}) VALUES ({', '.join('?' for _ in ED_HEADER)})",
            [[row[c] for c in ED_HEADER] for row in rows],
        )
    db.close()


def test_push_from_a_database_sends_only_new_rows_on_the_second_run(
    workspace: Workspace, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two pushes from a SQLite table: the second, after inserting rows, sends only those rows."""
    database = workspace.root / "data" / "ed.sqlite3"
    _ed_table(database, 0, 25)
    _use_sql_source(workspace, 'url = "sqlite:///data/ed.sqlite3"', batch_size=10)

    assert main(["push", "--config", str(workspace.config)]) == 0
    first = capsys.readouterr().out.strip()
    _ed_table(database, 25, 7)
    assert main(["push", "--config", str(workspace.config)]) == 0
    second = capsys.readouterr().out.strip()

    assert first == "read 25, sent 25, rejected 0, batches 3 (stored 3, duplicate 0)"
    assert second == "read 7, sent 7, rejected 0, batches 1 (stored 1, duplicate 0)"
    assert len(server.servicer.all_records()) == 32


def test_sqlalchemy_is_not_imported_for_a_csv_source(workspace: Workspace) -> None:
    """Loading a CSV config and building its source leaves sqlalchemy unimported (the agent runs without it)."""
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "import agents.cli, agents._pipeline, agents._check, agents._preview\n"
        "from agents import load_config\n"
        "from agents._source import open_source\n"
        f"open_source(load_config(Path({str(workspace.config)!r})).source)\n"
        "print('sqlalchemy' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
