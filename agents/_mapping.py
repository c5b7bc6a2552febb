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
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path

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
from agents._dates import DateParser, age_in_years, coarsen
from agents.errors import ConfigError

ID_SEPARATOR = "\x1f"
FIRST_EVENT_YEAR, LAST_EVENT_YEAR = 1900, 2199  # what the gateway accepts; anything else is a typo
MAX_AGE = 130  # older than anyone alive: a date-of-birth typo, not a person
_ASCII_KEEP = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_ASCII_DROP = str.maketrans("", "", "".join(chr(c) for c in range(128) if chr(c) not in _ASCII_KEEP))
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


class Pseudonymiser:
    """T0 tokens under one linkage key; the keyed HMAC state is built once and copied per record."""

    def __init__(self, linkage_key: bytes) -> None:
        self._keyed = hmac.new(linkage_key, digestmod=hashlib.sha256)

    def token(self, normalised: str) -> bytes:
        mac = self._keyed.copy()
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

_DimensionFn = Callable[[Mapping[str, str], date], int]
_MeasureFn = Callable[[Mapping[str, str]], float]


@dataclass(frozen=True)
class Mapper:
    """Turns source rows into contract records; see `map`."""

    contract: Contract
    columns: tuple[str, ...]
    _subject: Callable[[Mapping[str, str]], bytes]
    _event: Callable[[Mapping[str, str]], datetime]
    _dimensions: tuple[_DimensionFn, ...]
    _measures: tuple[_MeasureFn, ...]

    def map(self, row: Mapping[str, str]) -> MappedRecord:
        """The record for one row; raises Rejected naming the first field that does not fit."""
        token = self._subject(row)
        day = self._event(row).date()
        if not FIRST_EVENT_YEAR <= day.year <= LAST_EVENT_YEAR:
            raise Rejected(EVENT_DATE, f"outside the years {FIRST_EVENT_YEAR}-{LAST_EVENT_YEAR}")
        codes = tuple([fn(row, day) for fn in self._dimensions])
        values = tuple([fn(row) for fn in self._measures])
        return token, coarsen(day, self.contract.granularity), codes, values


def build_mapper(config: AgentConfig, contract: Contract, linkage_key: bytes) -> Mapper:
    """Check the field mappings against the contract and compile them; ConfigError names the field."""
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
    # one parser per format: a column read by two fields (event date, length of stay) is parsed once
    parsers = _Parsers()
    subject, event = specs[SUBJECT], specs[EVENT_DATE]
    if not isinstance(subject, PseudonymiseField) or not isinstance(event, DateField):
        raise ConfigError(f"{where}: subject must use pseudonymise and event_date must use date")
    return Mapper(
        contract=contract,
        columns=config.source_columns(),
        _subject=_subject_fn(subject, Pseudonymiser(linkage_key)),
        _event=_date_fn(EVENT_DATE, event.column, parsers[event.format], cache=False),
        _dimensions=tuple(_dimension_fn(config, specs[d.name], d, parsers) for d in contract.dimensions),
        _measures=tuple(_measure_fn(config, specs[m.name], m, parsers) for m in contract.measures),
    )


def _subject_fn(
    spec: PseudonymiseField, pseudonymiser: Pseudonymiser
) -> Callable[[Mapping[str, str]], bytes]:
    columns = spec.columns

    def subject(row: Mapping[str, str]) -> bytes:
        token = pseudonymiser.token_for(*(row[c] for c in columns))
        if token is None:
            raise Rejected(SUBJECT, "missing identifier")
        return token

    return subject


def _date_fn(
    field: str, column: str, parser: DateParser, *, cache: bool
) -> Callable[[Mapping[str, str]], datetime]:
    # dates of birth repeat across a person's records, event times hardly ever
    parse = lru_cache(maxsize=1 << 16)(parser.parse) if cache else parser.parse

    def parse_date(row: Mapping[str, str]) -> datetime:
        text = row[column].strip()
        if not text:
            raise Rejected(field, "missing date")
        try:
            return parse(text)
        except ValueError:
            raise Rejected(field, "not a valid date in the configured format") from None

    return parse_date


class _Parsers(dict[str, DateParser]):
    def __missing__(self, fmt: str) -> DateParser:
        parser = self[fmt] = DateParser(fmt)
        return parser


def _dimension_fn(
    config: AgentConfig, spec: FieldSpec, dimension: ContractDimension, parsers: _Parsers
) -> _DimensionFn:
    where = f"{config.path}: fields.{spec.name}"
    codes = {value: code for code, value in enumerate(dimension.domain)}
    name = spec.name
    if isinstance(spec, MapField):
        outside = [raw for raw, value in spec.mapping.items() if value not in codes]
        if outside:
            raise ConfigError(f"{where}.map: every value must be in the contract's domain for {name}")
        mapped = {raw: codes[value] for raw, value in spec.mapping.items()}
        column = spec.column

        def from_map(row: Mapping[str, str], _day: date) -> int:
            code = mapped.get(row[column].strip())
            if code is None:
                raise Rejected(name, "value not listed in the map")
            return code

        return from_map
    if isinstance(spec, LookupField):
        table = {key: codes[value] for key, value in _read_lookup(spec.file, where, codes).items()}
        column = spec.column

        def from_lookup(row: Mapping[str, str], _day: date) -> int:
            key = row[column].strip().upper()
            if not key:
                raise Rejected(name, "missing value")
            code = table.get(key)
            if code is None:
                raise Rejected(name, "no entry in the lookup file")
            return code

        return from_lookup
    if isinstance(spec, AgeBandField):
        by_age = _age_codes(dimension, where)
        birth_of = _date_fn(name, spec.column, parsers[spec.format], cache=True)

        def from_birth(row: Mapping[str, str], day: date) -> int:
            age = age_in_years(birth_of(row).date(), day)
            if age < 0:
                raise Rejected(name, "date of birth is after the event date")
            if age >= len(by_age) or by_age[age] is None:
                raise Rejected(name, "age fits no band")
            return by_age[age]  # type: ignore[return-value]

        return from_birth
    raise ConfigError(f"{where}.transform: {name} is a dimension; use map, lookup or age_band")


def _measure_fn(
    config: AgentConfig, spec: FieldSpec, measure: ContractMeasure, parsers: _Parsers
) -> _MeasureFn:
    where = f"{config.path}: fields.{spec.name}"
    low, high, name = measure.min, measure.max, spec.name
    if isinstance(spec, NumberField):
        column = spec.column

        def from_number(row: Mapping[str, str]) -> float:
            text = row[column].strip()
            if not text:
                raise Rejected(name, "missing number")
            try:
                value = float(text)
            except ValueError:
                raise Rejected(name, "not a number") from None
            if not math.isfinite(value):
                raise Rejected(name, "not a finite number")
            return min(max(value, low), high)

        return from_number
    if isinstance(spec, HoursBetweenField):
        parser = parsers[spec.format]
        start_of = _date_fn(name, spec.start_column, parser, cache=False)
        end_of = _date_fn(name, spec.end_column, parser, cache=False)

        def from_interval(row: Mapping[str, str]) -> float:
            hours = (end_of(row) - start_of(row)).total_seconds() / 3600.0
            return min(max(hours, low), high)

        return from_interval
    raise ConfigError(f"{where}.transform: {name} is a measure; use number or hours_between")


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
