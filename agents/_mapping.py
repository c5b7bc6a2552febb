"""The mapper: one source row in, one contract record out (or a reject naming the field).

Built once at start-up from the config, the dataset contract and the linkage key, and checked
against the contract then: every contract column must be mapped, no field may be mapped that
the contract lacks, every value a map or lookup can produce must be in the column's domain, and
age bands are parsed from the domain strings ("0-17", "18-24", ..., "65+"). At run time a record
that does not fit is rejected with the field at fault; the value itself is never reported.

Pseudonyms: T0 = HMAC-SHA256(K_link, normalise(id)) where normalise takes NFKD, drops accents
(combining marks), whitespace and punctuation, and upper-cases; several id columns are joined
with 0x1F (unit separator) after each is normalised.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agents._config import (
    EVENT_DATE,
    SUBJECT,
    AgeBandField,
    AgentConfig,
    DateField,
    FieldSpec,
    HoursBetweenField,
    LookupField,
    MapField,
    NumberField,
    PseudonymiseField,
)
from agents._contract import Contract, ContractDimension, ContractMeasure
from agents._dates import EPOCH, ISO_PATTERNS, DateParser
from agents.errors import ConfigError

if TYPE_CHECKING:
    from agents._columnar import ColumnarBuilder, ColumnarMapper

ID_SEPARATOR = "\x1f"
FIRST_EVENT_YEAR, LAST_EVENT_YEAR = 1900, 2199  # what the gateway accepts; anything else is a typo
MAX_AGE = 130  # older than anyone alive: a date-of-birth typo, not a person
_ASCII_KEEP = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_ASCII_DROP = str.maketrans("", "", "".join(chr(c) for c in range(128) if chr(c) not in _ASCII_KEEP))
_ASCII_DROP_BYTES = bytes(c for c in range(128) if chr(c) not in _ASCII_KEEP)
_BAND_RANGE = re.compile(r"^\s*(\d{1,3})\s*[-\u2013]\s*(\d{1,3})\s*$")
_BAND_OPEN = re.compile(r"^\s*(\d{1,3})\s*\+\s*$")
_BAND_SINGLE = re.compile(r"^\s*(\d{1,3})\s*$")


class Rejected(Exception):
    """A record does not fit the contract; `field` names where, `problem` says why (no values)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def normalise_identifier(raw: str) -> str:
    """Canonical form of an identifier: ' ab-12 34 5c ' and 'AB12345C' are the same person."""
    if raw.isascii():
        return raw.translate(_ASCII_DROP).upper()
    # decompose again after upper-casing: compatibility forms can decompose to lower case ('ª')
    # and upper-casing can produce new accented forms; combining marks, spaces and punctuation
    # are not alphanumeric, so one filter then drops them all
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", raw).upper())
    return "".join(ch for ch in text if ch.isalnum())


class _Mac(Protocol):
    def copy(self) -> _Mac: ...

    def update(self, data: bytes) -> None: ...

    def digest(self) -> bytes: ...


def _keyed_hmac(key: bytes) -> _Mac:
    """HMAC-SHA256 keyed once. OpenSSL's HMAC object itself when the standard library has it:
    `hmac.HMAC` wraps it in Python methods that cost ~0.5 µs a record in copy() and digest()."""
    try:
        import _hashlib

        mac: _Mac = _hashlib.hmac_new(key, digestmod="sha256")
    except (ImportError, AttributeError, ValueError):
        mac = hmac.new(key, digestmod=hashlib.sha256)
    return mac


class Pseudonymiser:
    """T0 tokens under one linkage key; the keyed HMAC state is built once and copied per record."""

    def __init__(self, linkage_key: bytes) -> None:
        self.keyed: _Mac = _keyed_hmac(linkage_key)

    def token(self, normalised: str) -> bytes:
        mac = self.keyed.copy()
        mac.update(normalised.encode("utf-8"))
        return mac.digest()

    def token_for(self, *raw_ids: str) -> bytes | None:
        """The token of one subject from its id columns, or None when any of them is empty."""
        parts = [normalise_identifier(raw) for raw in raw_ids]
        if not all(parts):
            return None
        return self.token(ID_SEPARATOR.join(parts))


MappedRecord = tuple[bytes, int, tuple[int, ...], tuple[float, ...]]
"""(subject token, event day, dimension codes in contract order, measures in contract order)."""

MapFn = Callable[[Mapping[str, str]], MappedRecord]
BatchColumns = list[list[Any]]
"""A batch in columns: subject tokens, event days, then dimension codes and measure values."""
AppendFn = Callable[[Mapping[str, str], BatchColumns], None]


@dataclass(frozen=True)
class Mapper:
    """Turns source rows into contract records; see `map`."""

    contract: Contract
    columns: tuple[str, ...]
    _map: MapFn
    _append: AppendFn
    source_code: str  # the compiled functions, for review and debugging (holds no key or value)
    # the same mapping over whole blocks of rows (agents/_columnar.py); None when a field has a
    # shape it does not know, or pyarrow is missing: then every row takes the row mapper
    columnar: ColumnarMapper | None = None

    def map(self, row: Mapping[str, str]) -> MappedRecord:
        """The record for one row; raises Rejected naming the first field that does not fit."""
        return self._map(row)

    def append(self, row: Mapping[str, str], columns: BatchColumns) -> None:
        """Map one row onto the end of `columns` (see `new_columns`); on Rejected nothing is added."""
        self._append(row, columns)

    @property
    def append_fn(self) -> AppendFn:
        """The compiled `append` itself, for a loop over rows: one Python call a row, not two."""
        return self._append

    def new_columns(self) -> BatchColumns:
        """Empty columns for a batch: tokens, days, one per dimension, one per measure (contract order)."""
        return [[] for _ in range(2 + len(self.contract.dimensions) + len(self.contract.measures))]


def build_mapper(
    config: AgentConfig, contract: Contract, linkage_key: bytes, *, columnar: bool = True
) -> Mapper:
    """Check the field mappings against the contract and compile them; ConfigError names the field.
    ``columnar=False`` leaves out the block mapper (tests compare the two paths with it)."""
    where = f"{config.path}: fields"
    contract_names = set(contract.column_names())
    for spec in config.fields:
        if spec.name not in contract_names | {SUBJECT, EVENT_DATE}:
            raise ConfigError(
                f"{where}.{spec.name}: not a column of the contract for dataset "
                f"{contract.dataset} (version {contract.version})"
            )
    for name in contract.column_names():
        if config.field(name) is None:
            raise ConfigError(
                f"{where}.{name}: missing; the contract for dataset {contract.dataset} "
                f"(version {contract.version}) needs every column mapped"
            )
    specs = {spec.name: spec for spec in config.fields}
    subject, event = specs[SUBJECT], specs[EVENT_DATE]
    if not isinstance(subject, PseudonymiseField) or not isinstance(event, DateField):
        raise ConfigError(f"{where}: subject must use pseudonymise and event_date must use date")
    code = _Compiler(columnar=columnar)
    code.subject(subject, Pseudonymiser(linkage_key))
    code.event(event, contract.granularity)
    dims = [code.dimension(config, specs[d.name], d) for d in contract.dimensions]
    measures = [code.measure(config, specs[m.name], m) for m in contract.measures]
    source, map_fn, append_fn = code.finish(dims, measures)
    return Mapper(
        contract=contract,
        columns=config.source_columns(),
        _map=map_fn,
        _append=append_fn,
        source_code=source,
        columnar=None if code.columnar is None else code.columnar.build(),
    )


class _Compiler:
    """Writes the mapper as one Python function, the way `dataclasses` writes __init__.

    Per record the agent does a few microseconds of real work (an HMAC, two or three dates,
    dictionary lookups); a chain of per-field closures more than doubled that in call overhead,
    and the agent's speed is the ingest ceiling (issue 3: 100k records/s). So the field checks
    are emitted as straight-line code into one function.

    Safety: the emitted text is made only of this class's templates, local names it invents and
    integers. Every value that comes from the config or the contract (column names, field names,
    maps, lookup tables, parsers, the keyed HMAC) is passed in the function's namespace under an
    invented name, never written into the code, so a config cannot inject code.
    """

    def __init__(self, *, columnar: bool) -> None:
        self.columnar = _columnar_builder() if columnar else None
        self.namespace: dict[str, object] = {
            "Rejected": Rejected,
            "_normalise": normalise_identifier,
            "_ASCII_DROP_BYTES": _ASCII_DROP_BYTES,
            "_SEP_BYTES": ID_SEPARATOR.encode(),
        }
        self.lines: list[str] = []
        self.parsers: dict[str, DateParser] = {}
        self.parsed: dict[tuple[str, bool], str] = {}
        self.iso_checks: dict[str, str] = {}  # parser name -> its ISO pattern's fullmatch
        self.dates: dict[tuple[str, str], str] = {}

    def const(self, value: object) -> str:
        name = f"_k{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def emit(self, *lines: str) -> None:
        self.lines.extend("    " + line for line in lines)

    def parser(self, fmt: str, *, cached: bool) -> str:
        # one parser per format: a column read by two fields (event date, length of stay) is
        # parsed once thanks to the parser's one-entry memo
        known = self.parsed.get((fmt, cached))
        if known is not None:
            return known
        parser = self.parsers.setdefault(fmt, DateParser(fmt))
        # dates of birth repeat across a person's records, event times hardly ever
        name = self.const(lru_cache(maxsize=1 << 16)(parser.parse) if cached else parser.parse)
        self.parsed[(fmt, cached)] = name
        if not cached and parser.iso_pattern is not None:
            # DateParser's ISO fast path written inline: two Python calls fewer per date, ~0.3 µs
            self.iso_checks[name] = self.const(parser.iso_pattern.fullmatch)
            self.namespace["_fromiso"] = datetime.fromisoformat
        return name

    def date(self, field: str, column: str, parse: str) -> str:
        """The name of a local holding the datetime in `column` (or Rejected(field) raised).

        Each (column, parser) pair gets its own local, assigned once: a second field reading the
        same column reuses it, and no later field can overwrite what an earlier one computed."""
        earlier = self.dates.get((column, parse))
        if earlier is not None:  # already parsed (and checked) by an earlier field: same text, same value
            return earlier
        var = f"_dt{len(self.dates)}"
        self.dates[(column, parse)] = var
        f, c = self.const(field), self.const(column)
        iso = self.iso_checks.get(parse)
        call = f"_fromiso(_s) if {iso}(_s) else {parse}(_s)" if iso else f"{parse}(_s)"
        self.emit(
            f"_s = row[{c}].strip()",
            "if not _s:",
            f"    raise Rejected({f}, 'missing date')",
            "try:",
            f"    {var} = {call}",
            "except ValueError:",
            f"    raise Rejected({f}, 'not a valid date in the configured format') from None",
        )
        return var

    def subject(self, spec: PseudonymiseField, pseudonymiser: Pseudonymiser) -> None:
        keyed = self.const(pseudonymiser.keyed)
        f = self.const(SUBJECT)
        parts = []
        for index, column in enumerate(spec.columns):
            c = self.const(column)
            # ASCII ids (nearly all) are normalised as bytes: bytes.translate deletes in C where
            # str.translate looks each character up in a dict, ~0.4 µs a record; the UTF-8 the
            # HMAC reads is the same either way (normalise_identifier, test_agent_mapping)
            self.emit(
                f"_r = row[{c}]",
                f"_p{index} = _r.encode().translate(None, _ASCII_DROP_BYTES).upper() if _r.isascii() "
                "else _normalise(_r).encode('utf-8')",
                f"if not _p{index}:",
                f"    raise Rejected({f}, 'missing identifier')",
            )
            parts.append(f"_p{index}")
        joined = parts[0] if len(parts) == 1 else f"_SEP_BYTES.join(({', '.join(parts)},))"
        self.emit(f"_mac = {keyed}.copy()", f"_mac.update({joined})", "_token = _mac.digest()")
        if self.columnar is not None:
            self.columnar.subject(spec, pseudonymiser.keyed, ID_SEPARATOR.encode())

    def event(self, spec: DateField, granularity: str) -> None:
        event = self.date(EVENT_DATE, spec.column, self.parser(spec.format, cached=False))
        f = self.const(EVENT_DATE)
        self.emit(
            f"_day = {event}.date()",
            f"if not {FIRST_EVENT_YEAR} <= _day.year <= {LAST_EVENT_YEAR}:",
            f"    raise Rejected({f}, 'outside the years {FIRST_EVENT_YEAR}-{LAST_EVENT_YEAR}')",
        )
        epoch = EPOCH.toordinal()
        if granularity == "month":
            self.emit(f"_coarse = _day.replace(day=1).toordinal() - {epoch}")
        else:
            self.emit(f"_coarse = _day.toordinal() - {epoch}")
        if self.columnar is not None and self._columnar_reads(spec.format):
            self.columnar.event_day(spec, granularity, FIRST_EVENT_YEAR, LAST_EVENT_YEAR)

    def _columnar_reads(self, fmt: str) -> bool:
        """Whether the block mapper reads dates in ``fmt``; when it does not, there is none."""
        if fmt in ISO_PATTERNS:
            return True
        self.columnar = None
        return False

    def dimension(self, config: AgentConfig, spec: FieldSpec, dimension: ContractDimension) -> str:
        where = f"{config.path}: fields.{spec.name}"
        codes = {value: code for code, value in enumerate(dimension.domain)}
        var = f"_d{len(self.lines)}"
        f = self.const(spec.name)
        if isinstance(spec, MapField):
            if any(value not in codes for value in spec.mapping.values()):
                raise ConfigError(
                    f"{where}.map: every value must be in the contract's domain for {spec.name}"
                )
            by_raw = {raw: codes[value] for raw, value in spec.mapping.items()}
            mapped = self.const(by_raw)
            if self.columnar is not None:
                self.columnar.coded(spec.column, by_raw, upper=False)
            self.emit(
                f"{var} = {mapped}.get(row[{self.const(spec.column)}].strip())",
                f"if {var} is None:",
                f"    raise Rejected({f}, 'value not listed in the map')",
            )
            return var
        if isinstance(spec, LookupField):
            coded = {key: codes[value] for key, value in _read_lookup(spec.file, where, codes).items()}
            table = self.const(coded)
            if self.columnar is not None:
                self.columnar.coded(spec.column, coded, upper=True)
            self.emit(
                f"_v = row[{self.const(spec.column)}].strip().upper()",
                "if not _v:",
                f"    raise Rejected({f}, 'missing value')",
                f"{var} = {table}.get(_v)",
                f"if {var} is None:",
                f"    raise Rejected({f}, 'no entry in the lookup file')",
            )
            return var
        if isinstance(spec, AgeBandField):
            by_age = _age_codes(dimension, where)
            bands = self.const(by_age)
            if self.columnar is not None and self._columnar_reads(spec.format):
                self.columnar.age_band(spec.column, spec.format, by_age)
            birth = self.date(spec.name, spec.column, self.parser(spec.format, cached=True))
            self.emit(
                f"_b = {birth}.date()",
                "_age = _day.year - _b.year - ((_day.month, _day.day) < (_b.month, _b.day))",
                "if _age < 0:",
                f"    raise Rejected({f}, 'date of birth is after the event date')",
                f"if _age >= {len(by_age)} or {bands}[_age] is None:",
                f"    raise Rejected({f}, 'age fits no band')",
                f"{var} = {bands}[_age]",
            )
            return var
        raise ConfigError(f"{where}.transform: {spec.name} is a dimension; use map, lookup or age_band")

    def measure(self, config: AgentConfig, spec: FieldSpec, measure: ContractMeasure) -> str:
        where = f"{config.path}: fields.{spec.name}"
        var = f"_m{len(self.lines)}"
        f = self.const(spec.name)
        low, high = self.const(measure.min), self.const(measure.max)
        if isinstance(spec, NumberField):
            self.emit(
                f"_t = row[{self.const(spec.column)}].strip()",
                "if not _t:",
                f"    raise Rejected({f}, 'missing number')",
                "try:",
                "    _x = float(_t)",
                "except ValueError:",
                f"    raise Rejected({f}, 'not a number') from None",
                "if _x != _x or _x in (_INF, -_INF):",
                f"    raise Rejected({f}, 'not a finite number')",
                f"{var} = {low} if _x < {low} else {high} if _x > {high} else _x",
            )
            self.namespace["_INF"] = math.inf
            if self.columnar is not None:
                self.columnar.number(spec.column, measure.min, measure.max)
            return var
        if isinstance(spec, HoursBetweenField):
            parse = self.parser(spec.format, cached=False)
            start = self.date(spec.name, spec.start_column, parse)
            end = self.date(spec.name, spec.end_column, parse)
            # clamped by comparisons, as min(max(...)) would, without its two builtin calls
            self.emit(
                f"_h = ({end} - {start}).total_seconds() / 3600.0",
                f"{var} = {low} if _h < {low} else {high} if _h > {high} else _h",
            )
            if self.columnar is not None and self._columnar_reads(spec.format):
                self.columnar.hours_between(spec, measure.min, measure.max)
            return var
        raise ConfigError(f"{where}.transform: {spec.name} is a measure; use number or hours_between")

    def finish(self, dims: list[str], measures: list[str]) -> tuple[str, MapFn, AppendFn]:
        def tuple_of(names: list[str]) -> str:
            return f"({', '.join(names)},)" if names else "()"

        body = "\n".join(self.lines)
        values = ["_token", "_coarse", *dims, *measures]
        # the same checks twice: once returning a record, once appending it to the batch's columns
        # (the pipeline's form: no per-record tuples to build and transpose again)
        appends = "\n".join(f"    _c{i}.append({value})" for i, value in enumerate(values))
        unpack = ", ".join(f"_c{i}" for i in range(len(values)))
        source = (
            f"def map_row(row):\n{body}\n"
            f"    return (_token, _coarse, {tuple_of(dims)}, {tuple_of(measures)})\n\n"
            f"def append_row(row, columns):\n{body}\n    {unpack}, = columns\n{appends}\n"
        )
        exec(compile(source, "<agents mapper>", "exec"), self.namespace)  # noqa: S102 - see the class docstring
        return source, self.namespace["map_row"], self.namespace["append_row"]  # type: ignore[return-value]


def _columnar_builder() -> ColumnarBuilder | None:
    try:
        from agents._columnar import ColumnarBuilder
    except ImportError:  # pyarrow is not installed: every row takes the row mapper
        return None
    return ColumnarBuilder()


def _read_lookup(path: Path, where: str, domain: Mapping[str, int]) -> dict[str, str]:
    """key -> value from a two-column CSV with a header row; keys trimmed and upper-cased."""
    table: dict[str, str] = {}
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            next(reader, None)  # the header row
            for fields in reader:
                if not fields or not any(f.strip() for f in fields):
                    continue
                line = reader.line_num
                if len(fields) != 2:
                    raise ConfigError(
                        f"{path}: line {line}: a lookup row has exactly two fields, key and value"
                    )
                key, value = fields[0].strip().upper(), fields[1].strip()
                if not key:
                    raise ConfigError(f"{path}: line {line}: empty key")
                if value not in domain:
                    raise ConfigError(f"{path}: line {line}: value is not in the contract's domain ({where})")
                if table.setdefault(key, value) != value:
                    raise ConfigError(f"{path}: line {line}: key listed twice with different values")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the lookup file ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{path}: the lookup file is not UTF-8 CSV") from exc
    if not table:
        raise ConfigError(f"{path}: the lookup file has no entries")
    return table


def _age_codes(dimension: ContractDimension, where: str) -> list[int | None]:
    """Code of the band for each whole age 0..MAX_AGE, parsed from the domain strings."""
    by_age: list[int | None] = [None] * (MAX_AGE + 1)
    for code, label in enumerate(dimension.domain):
        if match := _BAND_RANGE.match(label):
            low, high = int(match[1]), int(match[2])
        elif match := _BAND_OPEN.match(label):
            low, high = int(match[1]), MAX_AGE
        elif match := _BAND_SINGLE.match(label):
            low = high = int(match[1])
        else:
            raise ConfigError(
                f"{where}: the contract's {dimension.name} values are not age bands like '18-24' or '65+'"
            )
        if low > high or high > MAX_AGE:
            raise ConfigError(f"{where}: the contract's {dimension.name} has a band with bounds out of order")
        for age in range(low, high + 1):
            if by_age[age] is not None:
                raise ConfigError(f"{where}: the contract's {dimension.name} bands overlap")
            by_age[age] = code
    return by_age
