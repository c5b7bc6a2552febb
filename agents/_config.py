"""The agent's settings: one TOML file read once at start-up into frozen dataclasses.

Unknown keys are refused, every error names the file and the key, and relative paths resolve
against the directory of the config file (so a config and its keys can move together).

    [agent]     agency, dataset, batch_size (10000), state_dir
    [gateway]   address, server_name (optional), ca, cert, key, hpke_public_key, timeout_s (30),
                retries (5), backoff_initial_s (0.5), backoff_max_s (30), max_in_flight (2)
    [keys]      signing_key_id; linkage_key (file) or linkage_key_env (variable name);
                signing_key (file) or signing_key_env (variable name)
    [source]    id (optional, a stable name for the source); type = "csv", path, delimiter (","),
                quotechar ('"'), encoding ("utf-8"; any encoding that writes ASCII as ASCII:
                utf-8, utf-8-sig, latin-1, cp1252, ...)
                or type = "sql", url (a SQLAlchemy URL) or url_env (a variable holding it), query
                (one SELECT), watermark_column (unique, increasing: an id or sequence), tiebreak_column
                (a unique key; needed when the watermark repeats, e.g. a timestamp), fetch_size (5000);
                field formats for a SQL source are ISO (%Y-%m-%d, %Y-%m-%d %H:%M:%S): agents/_sql_source.py
    [run]       interval_s (900): how often `agent run` reads the source for new records
    [fields.<name>]  one table per contract column plus `subject` and `event_date`:
        pseudonymise   columns = [...]                   (only for `subject`)
        date           column, format                    (only for `event_date`)
        age_band       column (date of birth), format
        map            column, map = { raw = "value", ... }   (raw compared after trimming)
        lookup         column, file  (CSV with a header row, then key,value; keys compared
                                      after trimming and upper-casing)
        number         column
        hours_between  columns = [start, end], format
"""

from __future__ import annotations

import codecs
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from agents._dates import DateParser
from agents.errors import ConfigError

SUBJECT = "subject"
EVENT_DATE = "event_date"
MAX_BATCH_SIZE = 20_000  # keeps a sealed batch well under gRPC's default 4 MiB message limit
# Records per batch when the config says nothing. The gateway's per-batch work (policy decisions,
# the audit entry with its chain lock and checkpoint check, signature, HPKE, two database
# transactions: ~7 ms of its CPU, measured) cost more than its per-record work at 1,000 records;
# at 10,000 it is ~1 µs a record (issue 7). A sealed batch of 10,000 is ~560 KB, a seventh of
# gRPC's default 4 MiB message limit.
DEFAULT_BATCH_SIZE = 10_000

AGENCY_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
AGENCY_RULE = "lower-case letters, digits, '.', '_' or '-' (at most 63, starting with a letter or digit)"
_DATASET = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_FIELD = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_ASCII_PROBE = "\n\r,;|\t\"'azAZ09-_:./ "
_SOURCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


@dataclass(frozen=True)
class AgentSettings:
    agency: str
    dataset: str
    batch_size: int
    state_dir: Path


@dataclass(frozen=True)
class GatewaySettings:
    address: str
    ca: Path
    cert: Path
    key: Path
    hpke_public_key: Path
    server_name: str | None = None
    timeout_s: float = 30.0
    retries: int = 5
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    max_in_flight: int = 2


@dataclass(frozen=True)
class KeySettings:
    """Each secret comes from exactly one place: an owner-only file or an environment variable."""

    signing_key_id: str
    linkage_key: Path | None = None
    signing_key: Path | None = None
    linkage_key_env: str | None = None
    signing_key_env: str | None = None


@dataclass(frozen=True)
class CsvSourceSettings:
    path: Path
    delimiter: str = ","
    quotechar: str = '"'
    encoding: str = "utf-8"
    id: str | None = None  # a stable name for the source; see _source_id
    type: Literal["csv"] = "csv"


@dataclass(frozen=True)
class SqlSourceSettings:
    """A database read through SQLAlchemy; the URL is given in the file or by an environment variable."""

    query: str
    watermark_column: str
    url: str | None = None
    url_env: str | None = None
    tiebreak_column: str | None = None
    fetch_size: int = 5000
    id: str | None = None  # a stable name for the source; see _source_id
    type: Literal["sql"] = "sql"


SourceSettings = CsvSourceSettings | SqlSourceSettings


@dataclass(frozen=True)
class PseudonymiseField:
    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class _OneColumnField:
    """A field read from one source column; subclasses add their transform's settings."""

    name: str
    column: str

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)


@dataclass(frozen=True)
class DateField(_OneColumnField):
    format: str


@dataclass(frozen=True)
class AgeBandField(_OneColumnField):
    format: str


@dataclass(frozen=True)
class MapField(_OneColumnField):
    mapping: Mapping[str, str]


@dataclass(frozen=True)
class LookupField(_OneColumnField):
    file: Path


@dataclass(frozen=True)
class NumberField(_OneColumnField):
    pass


@dataclass(frozen=True)
class HoursBetweenField:
    name: str
    start_column: str
    end_column: str
    format: str

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.start_column, self.end_column)


FieldSpec = (
    PseudonymiseField | DateField | AgeBandField | MapField | LookupField | NumberField | HoursBetweenField
)
TRANSFORMS = ("pseudonymise", "date", "age_band", "map", "lookup", "number", "hours_between")


@dataclass(frozen=True)
class RunSettings:
    """Service mode (`agent run`)."""

    interval_s: float = 900.0


@dataclass(frozen=True)
class AgentConfig:
    path: Path
    agent: AgentSettings
    gateway: GatewaySettings
    keys: KeySettings
    source: SourceSettings
    fields: tuple[FieldSpec, ...]
    run: RunSettings = RunSettings()

    def field(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.name == name), None)

    def source_columns(self) -> tuple[str, ...]:
        """Every source column some mapping reads, in first-use order; no other column leaves."""
        seen: dict[str, None] = {}
        for spec in self.fields:
            seen.update(dict.fromkeys(spec.columns))
        return tuple(seen)


class _Table:
    """One TOML table being read: typed getters that name file and key, then a check for leftovers."""

    def __init__(self, file: Path, where: str, raw: object) -> None:
        self.file, self.where = file, where
        if not isinstance(raw, Mapping):
            raise self.error("must be a table")
        self.raw: Mapping[str, Any] = raw
        self.used: set[str] = set()

    def error(self, problem: str, key: str | None = None) -> ConfigError:
        place = ".".join(part for part in (self.where, key) if part)
        return ConfigError(f"{self.file}: {place}: {problem}")

    def _get(self, key: str, required: bool) -> Any:
        self.used.add(key)
        if key not in self.raw:
            if required:
                raise self.error("is required", key)
            return None
        return self.raw[key]

    def raw_value(self, key: str, *, default: object) -> object:
        value = self._get(key, required=False)
        return default if value is None else value

    def text(self, key: str, *, default: str | None = None) -> str:
        """A non-empty string; required unless a default is given."""
        value = self._get(key, required=default is None)
        if value is None and default is not None:
            return default
        if not isinstance(value, str) or not value.strip():
            raise self.error("must be a non-empty string", key)
        return value

    def name(self, key: str, pattern: re.Pattern[str], rule: str) -> str:
        value = self.text(key)
        if not pattern.match(value):
            raise self.error(f"must be {rule}", key)
        return value

    def optional_text(self, key: str) -> str | None:
        if key not in self.raw:
            self.used.add(key)
            return None
        return self.text(key)

    def integer(self, key: str, *, default: int, low: int, high: int) -> int:
        value = self._get(key, required=False)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.error(f"must be a whole number from {low} to {high}", key)
        return value

    def number(self, key: str, *, default: float, low: float, high: float) -> float:
        value = self._get(key, required=False)
        if value is None:
            return default
        if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
            raise self.error(f"must be a number from {low:g} to {high:g}", key)
        return float(value)

    def path(self, key: str) -> Path:
        return (self.file.parent / self.text(key)).resolve()

    def table(self, key: str) -> _Table:
        return _Table(self.file, f"{self.where}.{key}" if self.where else key, self._get(key, required=True))

    def optional_table(self, key: str) -> _Table | None:
        value = self._get(key, required=False)
        where = f"{self.where}.{key}" if self.where else key
        return None if value is None else _Table(self.file, where, value)

    def string_list(self, key: str, *, length: int | None = None) -> tuple[str, ...]:
        value = self._get(key, required=True)
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v.strip() for v in value)
            or len(set(value)) != len(value)
        ):
            raise self.error("must be a non-empty list of distinct column names", key)
        if length is not None and len(value) != length:
            raise self.error(f"must list exactly {length} columns", key)
        return tuple(value)

    def finish(self) -> None:
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            raise self.error("unknown key", unknown[0])


def load_config(path: Path) -> AgentConfig:
    """Read and check the agent's TOML config; ConfigError names the file and the key at fault."""
    file = path.resolve()
    try:
        with file.open("rb") as handle:
            raw = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the config file ({exc.strerror or exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML (not UTF-8 text)") from exc
    root = _Table(file, "", raw)
    config = AgentConfig(
        path=file,
        agent=_agent(root.table("agent")),
        gateway=_gateway(root.table("gateway")),
        keys=_keys(root.table("keys")),
        source=_source(root.table("source")),
        fields=_fields(root.table("fields")),
        run=_run(root.optional_table("run")),
    )
    root.finish()
    return config


def _agent(table: _Table) -> AgentSettings:
    settings = AgentSettings(
        agency=table.name("agency", AGENCY_NAME, AGENCY_RULE),
        dataset=table.name("dataset", _DATASET, "lower-case letters, digits or '_', starting with a letter"),
        batch_size=table.integer("batch_size", default=DEFAULT_BATCH_SIZE, low=1, high=MAX_BATCH_SIZE),
        state_dir=table.path("state_dir"),
    )
    table.finish()
    return settings


def _gateway(table: _Table) -> GatewaySettings:
    address = table.text("address")
    if any(c.isspace() for c in address):
        raise table.error("must not contain spaces", "address")
    backoff_initial = table.number("backoff_initial_s", default=0.5, low=0.0, high=60.0)
    settings = GatewaySettings(
        address=address,
        server_name=table.optional_text("server_name"),
        ca=table.path("ca"),
        cert=table.path("cert"),
        key=table.path("key"),
        hpke_public_key=table.path("hpke_public_key"),
        timeout_s=table.number("timeout_s", default=30.0, low=0.1, high=3600.0),
        retries=table.integer("retries", default=5, low=0, high=100),
        backoff_initial_s=backoff_initial,
        backoff_max_s=table.number("backoff_max_s", default=max(30.0, backoff_initial), low=0.0, high=3600.0),
        max_in_flight=table.integer("max_in_flight", default=2, low=1, high=16),
    )
    if settings.backoff_max_s < settings.backoff_initial_s:
        raise table.error("must not be below backoff_initial_s", "backoff_max_s")
    table.finish()
    return settings


def _keys(table: _Table) -> KeySettings:
    linkage_file, linkage_env = _file_or_env(table, "linkage_key")
    signing_file, signing_env = _file_or_env(table, "signing_key")
    settings = KeySettings(
        signing_key_id=table.text("signing_key_id"),
        linkage_key=linkage_file,
        signing_key=signing_file,
        linkage_key_env=linkage_env,
        signing_key_env=signing_env,
    )
    if any(c.isspace() for c in settings.signing_key_id):
        raise table.error("must not contain spaces", "signing_key_id")
    table.finish()
    return settings


def _file_or_env(table: _Table, key: str) -> tuple[Path | None, str | None]:
    """`key = "file"` or `key_env = "VARIABLE"`, exactly one of them (the variable is read later)."""
    env_key = f"{key}_env"
    if (key in table.raw) == (env_key in table.raw):
        raise table.error(f"give exactly one of {key} (a file) or {env_key} (an environment variable)", key)
    if key in table.raw:
        return table.path(key), table.optional_text(env_key)
    variable = table.name(env_key, _ENV_NAME, "an environment variable name (letters, digits, '_')")
    table.used.add(key)
    return None, variable


def _source(table: _Table) -> SourceSettings:
    kind = table.text("type")
    if kind == "sql":
        return _sql_source(table)
    if kind != "csv":
        raise table.error("must be one of: csv, sql", "type")
    delimiter = _one_character(table, "delimiter", ",")
    quotechar = _one_character(table, "quotechar", '"')
    if quotechar == delimiter:
        raise table.error("must differ from the delimiter", "quotechar")
    encoding = table.text("encoding", default="utf-8")
    try:
        codecs.lookup(encoding)
        ascii_compatible = _ASCII_PROBE.encode(encoding) == _ASCII_PROBE.encode("ascii")
    except LookupError as exc:
        raise table.error("is not a text encoding Python knows", "encoding") from exc
    if not ascii_compatible:
        # the reader finds line ends and resume offsets in bytes; UTF-16/32 exports need converting
        raise table.error("must write ASCII as ASCII (utf-8, latin-1, cp1252, ...; not utf-16)", "encoding")
    settings = CsvSourceSettings(
        path=table.path("path"),
        delimiter=delimiter,
        quotechar=quotechar,
        encoding=encoding,
        id=_source_id(table),
    )
    table.finish()
    return settings


def _source_id(table: _Table) -> str | None:
    """`[source] id`: the name the agent keeps the source's read position and batch ids under.

    Without it the name is derived from the file path (or the database URL and query), so moving
    the file or editing the query makes a new source that is read from its beginning. With it,
    the operator decides what counts as the same source."""
    if "id" not in table.raw:
        table.used.add("id")
        return None
    return table.name("id", _SOURCE_ID, "letters, digits, '.', '_' or '-' (at most 64)")


def _sql_source(table: _Table) -> SqlSourceSettings:
    try:  # sqlalchemy is needed only for a database source
        from agents import _sql_source as sql
    except ImportError as exc:
        problem = "a sql source needs the sqlalchemy package (the agent's 'sql' extra)"
        raise table.error(problem, "type") from exc
    if ("url" in table.raw) == ("url_env" in table.raw):
        problem = "give exactly one of url (a SQLAlchemy URL) or url_env (an environment variable)"
        raise table.error(problem, "url")
    url = table.optional_text("url")
    if url is not None:
        try:
            url = sql.resolve_sqlite_path(sql.parse_url(url), table.file.parent)
        except ValueError as exc:
            raise table.error(str(exc), "url") from exc
    url_env = None
    if "url_env" in table.raw:
        url_env = table.name("url_env", _ENV_NAME, "an environment variable name (letters, digits, '_')")
    try:
        query = sql.clean_query(table.text("query"))
    except ValueError as exc:
        raise table.error(str(exc), "query") from exc
    watermark = table.text("watermark_column")
    tiebreak = table.optional_text("tiebreak_column")
    if tiebreak is not None and tiebreak == watermark:
        raise table.error("must differ from watermark_column", "tiebreak_column")
    settings = SqlSourceSettings(
        query=query,
        watermark_column=watermark,
        url=url,
        url_env=url_env,
        tiebreak_column=tiebreak,
        fetch_size=table.integer("fetch_size", default=5000, low=1, high=1_000_000),
        id=_source_id(table),
    )
    table.finish()
    return settings


def _one_character(table: _Table, key: str, default: str) -> str:
    value = table.raw_value(key, default=default)
    if not isinstance(value, str) or len(value) != 1 or value in "\r\n":
        raise table.error("must be one character other than a line break", key)
    return value


def _run(table: _Table | None) -> RunSettings:
    if table is None:
        return RunSettings()
    settings = RunSettings(interval_s=table.number("interval_s", default=900.0, low=1.0, high=7 * 86400.0))
    table.finish()
    return settings


def _fields(table: _Table) -> tuple[FieldSpec, ...]:
    specs = []
    for name in table.raw:
        sub = table.table(name)
        if not _FIELD.match(name):
            raise sub.error("field names are lower-case letters, digits and '_'")
        specs.append(_field(name, sub))
    table.finish()
    names = {spec.name for spec in specs}
    for required in (SUBJECT, EVENT_DATE):
        if required not in names:
            raise table.error("is required", required)
    return tuple(specs)


def _field(name: str, table: _Table) -> FieldSpec:
    transform = table.text("transform")
    if transform not in TRANSFORMS:
        raise table.error(f"must be one of: {', '.join(TRANSFORMS)}", "transform")
    if (name == SUBJECT) != (transform == "pseudonymise"):
        raise table.error("the subject field, and only it, uses transform 'pseudonymise'", "transform")
    if (name == EVENT_DATE) != (transform == "date"):
        raise table.error("the event_date field, and only it, uses transform 'date'", "transform")
    spec: FieldSpec
    if transform == "pseudonymise":
        spec = PseudonymiseField(name, table.string_list("columns"))
    elif transform == "date":
        spec = DateField(name, table.text("column"), _format(table))
    elif transform == "age_band":
        spec = AgeBandField(name, table.text("column"), _format(table))
    elif transform == "map":
        spec = MapField(name, table.text("column"), _mapping(table))
    elif transform == "lookup":
        spec = LookupField(name, table.text("column"), table.path("file"))
    elif transform == "number":
        spec = NumberField(name, table.text("column"))
    else:
        start, end = table.string_list("columns", length=2)
        spec = HoursBetweenField(name, start, end, _format(table))
    table.finish()
    return spec


def _format(table: _Table) -> str:
    fmt = table.text("format")
    probe = datetime(2001, 11, 12, 13, 14, 15)  # every part distinct, so a lossy format shows
    try:
        parsed = DateParser(fmt).parse(probe.strftime(fmt))
    except ValueError:
        parsed = None
    if parsed is None or parsed.date() != probe.date():
        raise table.error("must be a strptime format with the year, month and day (e.g. %Y-%m-%d)", "format")
    return fmt


def _mapping(table: _Table) -> Mapping[str, str]:
    raw = table.raw_value("map", default=None)
    if not isinstance(raw, Mapping) or not raw:
        raise table.error("must be a non-empty table of source value = contract value", "map")
    mapping: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str) or not value:
            raise table.error("every value must be a non-empty string", "map")
        if key.strip() in mapping:
            raise table.error("two keys are the same after trimming spaces", "map")
        mapping[key.strip()] = value
    return MappingProxyType(mapping)
