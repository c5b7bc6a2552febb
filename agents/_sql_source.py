"""A SQL database source: the agency's SELECT, read incrementally by a watermark column.

Configured in ``[source]`` with ``type = "sql"`` (agents/_config.py, SqlSourceSettings). The agency
writes the query; the agent wraps it as a subquery and reads only what is new:

    SELECT src.<columns the mapping reads>, src.<watermark>[, src.<tiebreak>]
    FROM (<query>) AS src
    WHERE src.wm > :w                                        -- no tiebreak column
       or (src.wm > :w) OR (src.wm = :w AND src.tb > :t)     -- with one
    ORDER BY src.wm[, src.tb]

The WHERE clause is left out on a read from the beginning. Rows are streamed with a server-side
cursor (``stream_results``, ``fetch_size`` rows per round trip), so the agent's memory stays flat
whatever the table size. The agent opens one transaction per read, never commits it (PostgreSQL
sessions are also marked read-only), and reads only the columns it needs; give it a database
account that can only read the query's tables all the same.

**The watermark column** must be strictly increasing and unique for new rows: an id or a sequence.
A position is the watermark (and tiebreak) value of the last row yielded, stored with its type so a
later run binds the same type (int, str, float, Decimal as text, date/datetime/time as ISO text,
UUID as text). A non-unique column such as a timestamp needs ``tiebreak_column``, a unique key
ordered after it; two rows with the same watermark (and tiebreak) stop the read with a
SourceChangedError (the service stops: retrying cannot fix it), because resuming between them would
skip one. A row whose watermark (or tiebreak) is NULL can never be resumed past: it is rejected
(BadRow "watermark column is empty") on the first read, and every later read leaves such rows out,
so one added later is never seen; make the columns NOT NULL.

**Late commits are not seen.** A watermark only moves forward: rows committed late with a lower
value (a sequence number drawn by a transaction that commits after a later one) are skipped for
good. Read from a view that lags a little behind (``WHERE created_at < now() - interval '5
minutes'``), or use a value assigned at commit, where that matters.

**Values reach the mapping as text**, as a CSV export would give them, so the formats in
``[fields.*]`` for a SQL source are ISO formats: a DATE arrives as ``YYYY-MM-DD`` (``%Y-%m-%d``), a
TIMESTAMP as ``YYYY-MM-DD HH:MM:SS`` (``%Y-%m-%d %H:%M:%S``; fractions of a second dropped, a time
zone dropped after the database has converted the value to the session's zone), numbers with
``str()`` (Decimal without an exponent), booleans as ``true``/``false``, NULL as the empty string.
SQLite has no date types: a date stored as text arrives exactly as stored.

**Errors**: a database that cannot be reached, SQL the database refuses, or a connection lost in the
middle of a read stop the run with a SourceError naming the source by its URL with the password
masked; an error met while reading rows says only what failed and the driver's error class and code,
never the driver's message (it may quote a value). On PostgreSQL the agent sets TCP keepalives
(a vanished server is noticed within about a minute) and a 30-minute statement timeout; the URL's
query can set ``keepalives*`` or ``options`` itself. What was read before a lost connection has been
sent or spooled; the next run resumes after it.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Connection, CursorResult, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from agents._config import SqlSourceSettings
from agents._source import BadRow, Position, Row, RowStream, SourceRow
from agents.errors import ConfigError, SourceChangedError, SourceError

POSITION_KIND = "sql"
CONNECT_TIMEOUT_S = 10
# PostgreSQL: a peer that vanishes without closing (a firewall dropping the session, a failed-over
# host) is noticed within ~1 minute instead of the kernel's two hours; one statement (the first
# fetch of a large sorted read, a lock wait) gives up after 30 minutes rather than hanging the
# service. Any of these set in the URL's query wins; other ``options`` there are kept.
_PG_CONNECT_ARGS: dict[str, object] = {
    "connect_timeout": CONNECT_TIMEOUT_S,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
_PG_STATEMENT_TIMEOUT = "-c statement_timeout=1800000"
_HIDDEN_QUERY_KEYS = frozenset({"password", "sslpassword", "passfile", "token", "secret"})
_SELECT = re.compile(r"^\s*\(*\s*(select|with)\b", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
EMPTY_WATERMARK = "watermark column is empty"
EMPTY_TIEBREAK = "tiebreak column is empty"


# --- settings helpers (used by agents/_config.py at load time, too) ----------------------------


def parse_url(value: str) -> URL:
    """A SQLAlchemy URL whose dialect and driver are installed; ValueError says what is wrong
    without repeating the URL (it may hold a password)."""
    try:
        url = make_url(value.strip())
    except ArgumentError as exc:
        raise ValueError("is not a SQLAlchemy URL (dialect+driver://user:password@host/database)") from exc
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError as exc:
        raise ValueError(f"names a database dialect SQLAlchemy does not know ({url.drivername})") from exc
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise ValueError(
            f"the database driver for {url.drivername} is not installed (install it next to the agent)"
        ) from exc
    return url


def resolve_sqlite_path(url: URL, folder: Path) -> str:
    """The URL as text, a relative SQLite file resolved against `folder` (the config's), like every
    other path in the config; any other URL unchanged."""
    database = url.database
    if (
        url.get_backend_name() == "sqlite"
        and database
        and database != ":memory:"
        and not database.startswith("file:")
        and not Path(database).is_absolute()
    ):
        url = url.set(database=str((folder / database).resolve()))
    return url.render_as_string(hide_password=False)


def clean_query(query: str) -> str:
    """The query as it goes inside the subquery: trimmed, without a trailing semicolon; ValueError
    unless it is a SELECT (or WITH ... SELECT)."""
    cleaned = query.strip().rstrip(";").rstrip()
    if not _SELECT.match(cleaned):
        raise ValueError("must be one SELECT statement (or WITH ... SELECT)")
    return cleaned


def masked(url: URL) -> str:
    """The URL as it may appear in names, logs and messages: password (and secret options) hidden."""
    hidden = {key: "***" for key in url.query if key.lower() in _HIDDEN_QUERY_KEYS}
    if hidden:
        url = url.update_query_dict(hidden)
    return url.render_as_string(hide_password=True)


# --- values ------------------------------------------------------------------------------------


def _datetime_text(value: datetime) -> str:
    return value.replace(microsecond=0, tzinfo=None).isoformat(sep=" ")


def _time_text(value: time) -> str:
    return value.replace(microsecond=0, tzinfo=None).isoformat()


def _decimal_text(value: Decimal) -> str:
    return format(value, "f")


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


def _bytes_text(value: bytes | bytearray | memoryview) -> str:
    return bytes(value).decode("utf-8")  # UnicodeDecodeError: the row is rejected


# exact types only: a subclass (a driver's own str or int) falls through to the slower path
_TO_TEXT: dict[type, Callable[[Any], str]] = {
    str: lambda v: v,
    int: str,
    float: str,
    bool: _bool_text,
    Decimal: _decimal_text,
    datetime: _datetime_text,
    date: date.isoformat,
    time: _time_text,
    bytes: _bytes_text,
    bytearray: _bytes_text,
    memoryview: _bytes_text,
}


# for a driver's own subclasses: bool before int, datetime before date
_SUBCLASS_ORDER: tuple[type, ...] = (bool, datetime, date, str, int, float, Decimal, time, bytes, bytearray)


def to_text(value: object) -> str:
    """A database value as the mapper reads it (see the module docstring); NULL is ''."""
    if value is None:
        return ""
    convert = _TO_TEXT.get(type(value))
    if convert is not None:
        return convert(value)
    for kind in _SUBCLASS_ORDER:
        if isinstance(value, kind):
            return _TO_TEXT[kind](value)
    return str(value)


# (type, tag, JSON form), most specific first: bool is an int, a datetime is a date
_TAGS: tuple[tuple[type, str, Callable[[Any], object]], ...] = (
    (bool, "bool", bool),
    (int, "int", int),
    (str, "str", str),
    (float, "float", float),
    (Decimal, "decimal", str),
    (datetime, "datetime", datetime.isoformat),
    (date, "date", date.isoformat),
    (time, "time", time.isoformat),
    (uuid.UUID, "uuid", str),
)


def tag(value: object) -> list[object] | None:
    """A watermark value as [type, JSON value], or None when its type cannot be stored."""
    for kind, name, encode in _TAGS:
        if isinstance(value, kind):
            return [name, encode(value)]
    return None


_UNTAG: dict[str, Callable[[object], object]] = {
    "bool": lambda v: v if isinstance(v, bool) else _bad(),
    "int": lambda v: v if isinstance(v, int) and not isinstance(v, bool) else _bad(),
    "str": lambda v: v if isinstance(v, str) else _bad(),
    "float": lambda v: float(v) if isinstance(v, int | float) and not isinstance(v, bool) else _bad(),
    "decimal": lambda v: Decimal(v) if isinstance(v, str) else _bad(),
    "datetime": lambda v: datetime.fromisoformat(v) if isinstance(v, str) else _bad(),
    "date": lambda v: date.fromisoformat(v) if isinstance(v, str) else _bad(),
    "time": lambda v: time.fromisoformat(v) if isinstance(v, str) else _bad(),
    "uuid": lambda v: uuid.UUID(v) if isinstance(v, str) else _bad(),
}


def _bad() -> object:
    raise ValueError("a stored watermark value does not match its type")


def untag(pair: object) -> object:
    """The value `tag` stored, with its type; ValueError when `pair` is not one `tag` made."""
    if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], str):
        raise ValueError("not a stored watermark value")
    convert = _UNTAG.get(pair[0])
    if convert is None:
        raise ValueError("not a stored watermark value")
    return convert(pair[1])


# --- the source --------------------------------------------------------------------------------


class SqlSource:
    """The rows of the agency's query with a watermark above the stored one, oldest first.

    The URL comes from the config or, with `url_env`, from the environment (read here, once), so
    the source's name is known before anything is read.
    """

    def __init__(self, settings: SqlSourceSettings, environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self._url = self._resolve_url(settings, os.environ if environ is None else environ)
        self.label = f"sql source {masked(self._url)}"
        try:
            self._query = clean_query(settings.query)
        except ValueError as exc:
            raise ConfigError(f"source.query: {exc}") from exc

    @staticmethod
    def _resolve_url(settings: SqlSourceSettings, environ: Mapping[str, str]) -> URL:
        if settings.url_env is not None:
            where, value = (
                f"source.url_env: environment variable {settings.url_env}",
                environ.get(settings.url_env, ""),
            )
            if not value.strip():
                raise ConfigError(f"{where} is not set or empty")
        elif settings.url is not None:
            where, value = "source.url", settings.url
        else:
            raise ConfigError("source.url: neither url nor url_env is configured")
        try:
            return parse_url(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc

    @property
    def name(self) -> str:
        """'sql:' + the masked URL + '#' + a hash of the query and the ordering columns: a changed
        query is a new source (read from the beginning), a changed password is not."""
        settings = self.settings
        if settings.id is not None:
            return f"sql:id:{settings.id}"
        identity = "\x00".join(
            (_WHITESPACE.sub(" ", self._query), settings.watermark_column, settings.tiebreak_column or "")
        )
        digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:12]
        return f"sql:{masked(self._url)}#{digest}"

    def open(
        self, columns: Sequence[str], resume: Position | None = None
    ) -> AbstractContextManager[RowStream]:
        return self._open(columns, resume)

    @contextmanager
    def _open(self, columns: Sequence[str], resume: Position | None) -> Iterator[RowStream]:
        after = self._decode_resume(resume)
        self._check_sqlite_file()
        engine = self._engine()
        with ExitStack() as cleanup:
            cleanup.callback(engine.dispose)
            try:
                connection = engine.connect()
            except SQLAlchemyError as exc:
                raise SourceError(f"{self.label}: cannot connect to the database ({self._why(exc)})") from exc
            cleanup.callback(_quietly, connection.close)
            # before the first statement: the transaction it opens is then read-only (PostgreSQL)
            connection = connection.execution_options(postgresql_readonly=True)
            selected, header = self._selected(connection, columns)
            resumed = resume is not None and (after is not None or int(resume["rows"]) > 0)  # type: ignore[call-overload]
            statement, params = self._statement(connection, selected, after, resumed=resumed)
            try:
                streamed = text(statement).execution_options(stream_results=True)
                result = connection.execute(streamed, params).yield_per(self.settings.fetch_size)
            except SQLAlchemyError as exc:
                # rows are evaluated from here on: the driver's message may quote a value
                raise self.read_error(exc) from exc
            cleanup.callback(_quietly, result.close)
            yield _SqlStream(
                self,
                result=result,
                selected=selected,
                header=header,
                columns=columns,
                after=after,
                resume=resume,
            )

    def _engine(self) -> Engine:
        connect_args: dict[str, object] = {}
        if self._url.get_backend_name() == "postgresql":
            query = self._url.query
            connect_args = {k: v for k, v in _PG_CONNECT_ARGS.items() if k not in query}
            given = query.get("options", "")
            given = " ".join(given) if isinstance(given, tuple) else given
            if "statement_timeout" not in given:  # the URL's options (a search_path) keep theirs
                connect_args["options"] = f"{given} {_PG_STATEMENT_TIMEOUT}".strip()
        try:
            return create_engine(self._url, poolclass=NullPool, connect_args=connect_args)
        except (SQLAlchemyError, ImportError, TypeError) as exc:
            raise SourceError(f"{self.label}: cannot set up the database driver") from exc

    def _check_sqlite_file(self) -> None:
        # SQLite creates a missing file on connect; an empty new database is never what was meant
        database = self._url.database
        if self._url.get_backend_name() != "sqlite" or not database or database == ":memory:":
            return
        if database.startswith("file:") or self._url.query.get("uri"):
            return
        if not Path(database).is_file():
            raise SourceError(f"{self.label}: the database file does not exist")

    def _selected(
        self, connection: Connection, columns: Sequence[str]
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The columns to read, in order (the mapping's, then the watermark and tiebreak), and all
        the query's result columns; checked by running the query for no row, before anything is
        read: no row is evaluated, so the driver's message can only quote the query and the URL."""
        settings = self.settings
        probe = f"SELECT * FROM ({self._query}) AS src WHERE 1 = 0"  # noqa: S608 - the agency's own SELECT
        try:
            with connection.execute(text(probe)) as result:
                names = list(result.keys())
        except SQLAlchemyError as exc:
            raise SourceError(f"{self.label}: the database refused the query ({self._why(exc)})") from exc
        wanted = dict.fromkeys(columns, "source.query: column '{}', which the mapping reads,")
        wanted.setdefault(settings.watermark_column, "source.watermark_column: column '{}'")
        if settings.tiebreak_column is not None:
            wanted.setdefault(settings.tiebreak_column, "source.tiebreak_column: column '{}'")
        for column, what in wanted.items():
            if names.count(column) != 1:
                problem = "is not a column" if column not in names else "appears more than once"
                raise ConfigError(f"{self.label}: {what.format(column)} {problem} in the query's result")
        return tuple(wanted), tuple(names)

    def _statement(
        self,
        connection: Connection,
        selected: Sequence[str],
        after: tuple[object, object] | None,
        *,
        resumed: bool,
    ) -> tuple[str, dict[str, object]]:
        """The read, ordered by watermark (and tiebreak), after ``after``. Once anything has been
        read (``resumed``), rows whose watermark or tiebreak is NULL are left out: they were
        rejected on the first read, and reading them again would reject them again every run."""
        quote = connection.dialect.identifier_preparer.quote
        settings = self.settings
        wm = f"src.{quote(settings.watermark_column)}"
        tb = None if settings.tiebreak_column is None else f"src.{quote(settings.tiebreak_column)}"
        columns = ", ".join(f"src.{quote(column)}" for column in selected)
        statement = f"SELECT {columns} FROM ({self._query}) AS src"  # noqa: S608 - quoted names, bound values
        params: dict[str, object] = {}
        conditions = []
        if after is not None:
            params["w"] = after[0]
            if tb is None:
                conditions.append(f"{wm} > :w")
            else:
                params["t"] = after[1]
                conditions.append(f"({wm} > :w) OR ({wm} = :w AND {tb} > :t)")
        elif resumed:
            conditions.append(f"{wm} IS NOT NULL")
        if resumed and tb is not None:
            conditions.append(f"{tb} IS NOT NULL")
        if conditions:
            statement += " WHERE " + " AND ".join(f"({c})" for c in conditions)
        statement += f" ORDER BY {wm}" if tb is None else f" ORDER BY {wm}, {tb}"
        return statement, params

    def _decode_resume(self, resume: Position | None) -> tuple[object, object] | None:
        """(watermark, tiebreak) after which to read, or None to read from the beginning."""
        if resume is None:
            return None
        try:
            if resume.get("kind") != POSITION_KIND or not isinstance(resume.get("rows"), int):
                raise ValueError("not a position of a SQL source")  # noqa: TRY301 - one message for all
            if resume.get("after") is None:
                return None
            watermark = untag(resume.get("after"))
            tiebreak = None if self.settings.tiebreak_column is None else untag(resume.get("tiebreak"))
        except ValueError as exc:
            raise SourceError(
                f"{self.label}: the saved read position does not belong to this SQL source; "
                "run again with --from-start to read it from the beginning"
            ) from exc
        return watermark, tiebreak

    def _why(self, exc: SQLAlchemyError) -> str:
        """The driver's first line, only for errors met before any row is evaluated (connecting,
        the no-row probe), which quote the URL's host or the query's names, never a row; the
        password is removed."""
        original = exc.orig if isinstance(exc, DBAPIError) else exc
        line = next((part.strip() for part in str(original).splitlines() if part.strip()), "")
        password = self._url.password
        if password:
            line = line.replace(str(password), "***")
        return f"{type(original).__name__}: {line[:300]}" if line else type(original).__name__

    def read_error(self, exc: SQLAlchemyError) -> SourceError:
        """An error met once rows are evaluated: class and code only, never the driver's message
        (``invalid input syntax for type integer: "<a value>"`` quotes the row)."""
        original = exc.orig if isinstance(exc, DBAPIError) else exc
        code = getattr(original, "sqlstate", None) or getattr(original, "sqlite_errorname", None)
        detail = type(original).__name__ + (f", {code}" if code else "")
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return SourceError(
                f"{self.label}: the connection to the database was lost while reading rows ({detail}); "
                "what was read before is kept, and the next run resumes after it"
            )
        return SourceError(f"{self.label}: reading rows failed ({detail})")


def _quietly(close: Callable[[], object]) -> None:
    """Release a cursor or connection; one the database already dropped may fail, which changes nothing."""
    with suppress(Exception):  # a driver's own error class, too
        close()


class _SqlStream:
    def __init__(
        self,
        source: SqlSource,
        *,
        result: CursorResult[object],
        selected: Sequence[str],
        header: tuple[str, ...],
        columns: Sequence[str],
        after: tuple[object, object] | None,
        resume: Position | None,
    ) -> None:
        self._source, self._result, self._header = source, result, header
        index = {name: i for i, name in enumerate(selected)}
        self._picks = tuple((column, index[column]) for column in dict.fromkeys(columns))
        settings = source.settings
        self._wm = index[settings.watermark_column]
        self._tb = None if settings.tiebreak_column is None else index[settings.tiebreak_column]
        self._last: tuple[object, object] | None = after
        self._rows = 0 if resume is None else int(resume["rows"])  # type: ignore[call-overload]

    def progress(self) -> float | None:
        return None  # counting the rows first would cost a second scan

    def header(self) -> tuple[str, ...]:
        return self._header

    def position(self) -> Position:
        position: dict[str, object] = {"kind": POSITION_KIND, "rows": self._rows, "after": None}
        if self._last is not None:
            watermark, tiebreak = self._last
            position["after"] = self._tagged(watermark, "watermark_column")
            if self._tb is not None:
                position["tiebreak"] = self._tagged(tiebreak, "tiebreak_column")
        return position

    def _tagged(self, value: object, key: str) -> list[object]:
        tagged = tag(value)
        if tagged is None:
            raise SourceError(
                f"{self._source.label}: source.{key}: values of type {type(value).__name__} "
                "cannot be stored as a read position (use a number, text, date or timestamp column)"
            )
        return tagged

    def __iter__(self) -> Iterator[SourceRow]:
        partitions = self._result.partitions()
        picks, wm_index, tb_index = self._picks, self._wm, self._tb
        while True:
            try:
                rows = next(partitions, None)
            except SQLAlchemyError as exc:
                raise self._source.read_error(exc) from exc
            if rows is None:
                return
            for row in rows:
                self._rows += 1
                yield self._rows, self._row(row, picks, wm_index, tb_index)

    def _row(
        self,
        row: Sequence[object],
        picks: Sequence[tuple[str, int]],
        wm_index: int,
        tb_index: int | None,
    ) -> Row | BadRow:
        watermark = row[wm_index]
        tiebreak = None if tb_index is None else row[tb_index]
        if watermark is None:
            return BadRow(EMPTY_WATERMARK)
        if tb_index is not None and tiebreak is None:
            return BadRow(EMPTY_TIEBREAK)
        if self._last is not None and watermark == self._last[0] and tiebreak == self._last[1]:
            key = "watermark_column" if tb_index is None else "tiebreak_column"
            hint = "; set source.tiebreak_column to a unique key" if tb_index is None else ""
            raise SourceChangedError(
                f"{self._source.label}: source.{key}: two rows share the same value, so a later run "
                f"could not resume between them{hint}"
            )
        self._last = (watermark, tiebreak)
        try:
            return {column: to_text(row[index]) for column, index in picks}
        except UnicodeDecodeError:
            return BadRow("a binary column holds bytes that are not UTF-8 text")
