"""`agent preview`: the first N records exactly as they would leave, and what never leaves.

The preview runs the real code of `agent push` up to the plaintext that would be sealed: the
mapper (agents/_mapping.py) with the real linkage key, then agents/_seal.record_batch, serialised
as the sealer serialises it. It then decodes THAT plaintext, so what it shows is what the gateway
would open, not a second description of the mapping that could drift from it.

What it never does: print a pseudonym (or any part of one) or a source value of a column that does
not leave; send anything to the gateway but GetContract; write anything (no reject file, no contract
cache, no read position); read more of the source than the first N rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from itertools import islice
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
    load_config,
)
from agents._contract import Contract, cache_path, load_cached_contract
from agents._dates import EPOCH
from agents._keys import KeySource, key_source, load_tls_material
from agents._mapping import FIRST_EVENT_YEAR, LAST_EVENT_YEAR, MappedRecord, Rejected, build_mapper
from agents._pb import ingest_pb2
from agents._push import GatewayClient, TlsMaterial
from agents._seal import record_batch
from agents._source import BadRow, open_source
from agents.errors import ConfigError, PermanentPushError, TransientPushError

DEFAULT_ROWS = 10
MAX_ROWS = 1000
GATEWAY_TIMEOUT_S = 10.0  # one GetContract attempt; a preview should not sit through push's retries
ROW = "row"  # the "field" of a reject when the line itself could not be read (as agents/_pipeline.py)
FROM_GATEWAY, FROM_CACHE = "gateway", "cache"

PREVIEW_DESCRIPTION = f"""\
Show, before anything is sent, exactly what would leave this machine:

  1. every column of the source export, and for each one either "leaves as <field> via
     <transform>" or "does not leave" (a column that no field reads never leaves);
  2. every field that leaves: its transform, the source column(s) it reads, and what the dataset
     contract allows (the values of a category, the range a number is clamped to);
  3. the first N records as they would leave: mapped, pseudonymised and coarsened by the same code
     `agent push` runs, put in the batch that would be sealed, and decoded back from it;
  4. the rows among the first N that would be rejected: source line, field and reason.

Subjects show as "pseudonym (32 bytes)": the pseudonym is the consortium's secret and is never
printed, nor is any part of it or the identifier it comes from. Rejects never show values.

The dataset contract is asked of the gateway (GetContract, one attempt of at most {GATEWAY_TIMEOUT_S:g} s;
nothing else is sent). With --offline, or when the gateway cannot be reached (said on stderr),
the contract cached in <state_dir> by the last `agent push` is used. Nothing is written: not the
reject file, not the contract cache, not the read position; only the first N rows are read.

examples:
  agent preview --config agent-health.toml                 the first 10 rows, as tables
  agent preview --config agent-health.toml --rows 50       the first 50
  agent preview --config agent-health.toml --offline       no network: the cached contract
  agent preview --config agent-health.toml --json > what-leaves.json
"""


@dataclass(frozen=True)
class Use:
    """One field that a source column feeds."""

    field: str
    transform: str


@dataclass(frozen=True)
class ColumnView:
    """A column of the source header and the fields it feeds (none: it does not leave)."""

    column: str
    uses: tuple[Use, ...]

    def summary(self) -> str:
        if not self.uses:
            return "does not leave"
        return "leaves " + ", and ".join(f"as {u.field} via {u.transform}" for u in self.uses)


@dataclass(frozen=True)
class FieldView:
    """A field that leaves: how it is made and what the contract allows it to hold."""

    field: str
    kind: str  # subject, event_date, dimension or measure
    transform: str
    columns: tuple[str, ...]
    how: str
    allowed: str
    domain: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class RecordView:
    """One record decoded from the batch plaintext; `values` in the order the fields are listed."""

    line: int
    values: dict[str, str | float]


@dataclass(frozen=True)
class RejectView:
    line: int
    field: str
    reason: str


@dataclass(frozen=True)
class Preview:
    contract: Contract
    contract_from: str  # FROM_GATEWAY or FROM_CACHE
    source: str
    rows_read: int
    columns: tuple[ColumnView, ...]
    fields: tuple[FieldView, ...]
    records: tuple[RecordView, ...]
    rejected: tuple[RejectView, ...]
    plaintext_bytes: int  # size of the batch plaintext before sealing (0 when no record fits)

    def as_dict(self) -> dict[str, object]:
        return {
            "contract": {
                "dataset": self.contract.dataset,
                "version": self.contract.version,
                "granularity": self.contract.granularity,
                "from": self.contract_from,
            },
            "source": self.source,
            "rows_read": self.rows_read,
            "plaintext_bytes": self.plaintext_bytes,
            "columns": [
                {
                    "column": c.column,
                    "leaves": bool(c.uses),
                    "summary": c.summary(),
                    "as": [{"field": u.field, "transform": u.transform} for u in c.uses],
                }
                for c in self.columns
            ],
            "fields": [_field_dict(f) for f in self.fields],
            "records": [{"line": r.line, "values": r.values} for r in self.records],
            "rejected": [{"line": r.line, "field": r.field, "reason": r.reason} for r in self.rejected],
        }


def _field_dict(view: FieldView) -> dict[str, object]:
    out: dict[str, object] = {
        "field": view.field,
        "kind": view.kind,
        "transform": view.transform,
        "columns": list(view.columns),
        "how": view.how,
        "allowed": view.allowed,
    }
    if view.domain is not None:
        out["domain"] = list(view.domain)
    if view.min is not None and view.max is not None:
        out["min"], out["max"] = view.min, view.max
    return out


def build_preview(
    config: AgentConfig,
    *,
    rows: int = DEFAULT_ROWS,
    offline: bool = False,
    keys: KeySource | None = None,
    notify: Callable[[str], None] = lambda _line: None,
) -> Preview:
    """Map the first `rows` source rows as `agent push` would, decode the batch, describe it all.

    `notify` receives one line when the gateway is unreachable and the cached contract is used."""
    linkage_key = (keys or key_source(config.keys)).linkage_key()
    contract, contract_from = fetch_contract(config, offline=offline, notify=notify)
    mapper = build_mapper(config, contract, linkage_key)
    source = open_source(config.source)
    records: list[MappedRecord] = []
    lines: list[int] = []
    rejected: list[RejectView] = []
    read = 0
    with source.open(config.source_columns()) as stream:
        header = stream.header()
        # islice stops after `rows` rows without asking for another: the rest is never read
        for line, row in islice(stream, rows):
            read += 1
            if isinstance(row, BadRow):
                rejected.append(RejectView(line, ROW, row.problem))
                continue
            try:
                records.append(mapper.map(row))
            except Rejected as exc:
                rejected.append(RejectView(line, exc.field, exc.problem))
            else:
                lines.append(line)
    plaintext = b""
    if records:
        # serialised exactly as agents/_seal.Sealer.seal serialises the plaintext it seals
        plaintext = record_batch(contract, records).SerializeToString(deterministic=True)
    return Preview(
        contract=contract,
        contract_from=contract_from,
        source=source.name,
        rows_read=read,
        columns=column_views(config, header),
        fields=field_views(config, contract),
        records=decode_records(plaintext, lines),
        rejected=tuple(rejected),
        plaintext_bytes=len(plaintext),
    )


def fetch_contract(
    config: AgentConfig, *, offline: bool, notify: Callable[[str], None]
) -> tuple[Contract, str]:
    """The contract from the gateway (one attempt), or from the cache when offline or unreachable."""
    if offline:
        return cached_contract(config), FROM_CACHE
    tls = TlsMaterial(*load_tls_material(config.gateway))
    settings = replace(config.gateway, retries=0, timeout_s=min(config.gateway.timeout_s, GATEWAY_TIMEOUT_S))
    try:
        with GatewayClient(settings, tls) as client:
            message = client.get_contract(config.agent.dataset)
    except TransientPushError as exc:
        try:
            contract = cached_contract(config)
        except ConfigError as cache_exc:
            raise TransientPushError(
                f"{exc.message}; and there is no cached contract to preview with ({cache_exc.message})"
            ) from exc
        path = cache_path(config.agent.state_dir, config.agent.dataset)
        notify(
            f"gateway unreachable, so this preview uses the contract cached in {path} "
            f"(version {contract.version}): {exc.message}"
        )
        return contract, FROM_CACHE
    if message.dataset != config.agent.dataset:
        raise PermanentPushError("gateway answered with the contract of another dataset")
    return _owned(config, Contract.from_proto(message)), FROM_GATEWAY


def cached_contract(config: AgentConfig) -> Contract:
    message = load_cached_contract(config.agent.state_dir, config.agent.dataset)
    return _owned(config, Contract.from_proto(message))


def _owned(config: AgentConfig, contract: Contract) -> Contract:
    if contract.owner_agency != config.agent.agency:
        raise ConfigError(
            f"{config.path}: agent.agency: dataset {contract.dataset} is owned by another agency"
        )
    return contract


def transform_name(spec: FieldSpec) -> str:
    names: dict[type, str] = {
        PseudonymiseField: "pseudonymise",
        DateField: "date",
        AgeBandField: "age_band",
        MapField: "map",
        LookupField: "lookup",
        NumberField: "number",
        HoursBetweenField: "hours_between",
    }
    return names.get(type(spec), type(spec).__name__)


def column_views(config: AgentConfig, header: Sequence[str]) -> tuple[ColumnView, ...]:
    """Each header column with the fields it feeds, in the order the fields are listed."""
    uses: dict[str, list[Use]] = {}
    for spec in _ordered_specs(config):
        for column in dict.fromkeys(spec.columns):
            uses.setdefault(column, []).append(Use(spec.name, transform_name(spec)))
    return tuple(ColumnView(column, tuple(uses.get(column, ()))) for column in header)


def _ordered_specs(config: AgentConfig) -> list[FieldSpec]:
    """subject, event_date, then the rest in config order (build_mapper checked they all exist)."""
    first = [spec for name in (SUBJECT, EVENT_DATE) if (spec := config.field(name)) is not None]
    return first + [spec for spec in config.fields if spec.name not in (SUBJECT, EVENT_DATE)]


def field_views(config: AgentConfig, contract: Contract) -> tuple[FieldView, ...]:
    """subject, event_date, then the contract's dimensions and measures in contract order."""
    views: list[FieldView] = []
    subject, event = config.field(SUBJECT), config.field(EVENT_DATE)
    if subject is not None:
        views.append(
            FieldView(
                SUBJECT,
                "subject",
                transform_name(subject),
                subject.columns,
                _how(subject, contract),
                "a pseudonym (32 bytes), keyed with the linkage key; the identifier never leaves",
            )
        )
    if event is not None:
        views.append(
            FieldView(
                EVENT_DATE,
                "event_date",
                transform_name(event),
                event.columns,
                _how(event, contract),
                f"a date to the {contract.granularity}, years {FIRST_EVENT_YEAR}-{LAST_EVENT_YEAR}",
            )
        )
    for dimension in contract.dimensions:
        spec = config.field(dimension.name)
        if spec is not None:
            views.append(
                FieldView(
                    dimension.name,
                    "dimension",
                    transform_name(spec),
                    spec.columns,
                    _how(spec, contract),
                    "one of: " + ", ".join(dimension.domain),
                    domain=dimension.domain,
                )
            )
    for measure in contract.measures:
        spec = config.field(measure.name)
        if spec is not None:
            views.append(
                FieldView(
                    measure.name,
                    "measure",
                    transform_name(spec),
                    spec.columns,
                    _how(spec, contract),
                    f"a number clamped to {measure.min:g}..{measure.max:g}",
                    min=measure.min,
                    max=measure.max,
                )
            )
    return tuple(views)


def _how(spec: FieldSpec, contract: Contract) -> str:
    """The transform in plain words (config settings only, never a record value)."""
    match spec:
        case PseudonymiseField(columns=columns):
            joined = " (the columns joined)" if len(columns) > 1 else ""
            text = f"HMAC-SHA256 of the identifier{joined}, trimmed, upper-cased, no accents or punctuation"
        case DateField(format=fmt):
            to = "the first of its month" if contract.granularity == "month" else "the day"
            text = f"read as {fmt}, coarsened to {to}"
        case AgeBandField(format=fmt):
            text = f"age on the event date from a date of birth read as {fmt}, as its band"
        case MapField(mapping=mapping):
            text = f"translated by the map in the config ({len(mapping)} source values)"
        case LookupField(file=file):
            text = f"looked up in {file.name}"
        case NumberField():
            text = "read as a number"
        case HoursBetweenField(start_column=start, end_column=end, format=fmt):
            text = f"hours from {start} to {end}, read as {fmt}"
        case _:
            text = transform_name(spec)
    return text


def decode_records(plaintext: bytes, lines: Sequence[int]) -> tuple[RecordView, ...]:
    """The records of a RecordBatch plaintext, as the gateway would read them; pseudonyms by size only."""
    if not plaintext:
        return ()
    batch = ingest_pb2.RecordBatch.FromString(plaintext)
    count = len(batch.subject_tokens)
    if count != len(lines) or len(batch.event_days) != count:
        raise ValueError("the batch does not hold one entry per record")
    views = []
    for i, line in enumerate(lines):
        values: dict[str, str | float] = {
            SUBJECT: f"pseudonym ({len(batch.subject_tokens[i])} bytes)",
            EVENT_DATE: (EPOCH + timedelta(days=batch.event_days[i])).isoformat(),
        }
        for dimension in batch.dimensions:
            values[dimension.name] = dimension.dictionary[dimension.codes[i]]
        for measure in batch.measures:
            values[measure.name] = measure.values[i]
        views.append(RecordView(line, values))
    return tuple(views)


# --- output ----------------------------------------------------------------------------------


def render(preview: Preview, *, width: int | None = None) -> None:
    """The preview as rich tables on stdout; every text from the config or file is shown literally."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(width=width, highlight=False, soft_wrap=False)
    contract = preview.contract
    if preview.contract_from == FROM_GATEWAY:
        origin, asked = "from the gateway", "Only the contract was asked of the gateway"
    else:
        origin, asked = "from the cache in state_dir", "The gateway was not asked"
    console.print(
        Text(
            f"Preview of dataset {contract.dataset}, contract version {contract.version} ({origin}). "
            f"Source {preview.source}, first {_count(preview.rows_read, 'row')}: "
            f"{len(preview.records)} would leave, {len(preview.rejected)} would be rejected. "
            f"{asked}; nothing was sent or written."
        )
    )

    columns = Table(title="Source columns: what leaves and what does not", title_justify="left")
    columns.add_column("source column", overflow="fold")
    columns.add_column("leaves?", overflow="fold")
    for view in preview.columns:
        style = "green" if view.uses else "red"
        columns.add_row(Text(view.column), Text(view.summary(), style=style))
    console.print(columns)

    fields = Table(title="Fields that leave", title_justify="left")
    for name in ("field", "transform", "from column(s)", "how", "allowed by the contract"):
        fields.add_column(name, overflow="fold")
    for field in preview.fields:
        fields.add_row(
            Text(field.field),
            Text(field.transform),
            Text(", ".join(field.columns)),
            Text(field.how),
            Text(field.allowed),
        )
    console.print(fields)

    if preview.records:
        title = (
            f"{_count(len(preview.records), 'record')} as they would leave (decoded from the "
            f"{preview.plaintext_bytes}-byte batch that would be sealed)"
        )
        records = Table(title=title, title_justify="left")
        records.add_column("line", justify="right")
        names = list(preview.records[0].values)
        for name in names:
            records.add_column(name, overflow="fold")
        for record in preview.records:
            records.add_row(str(record.line), *(Text(_cell(record.values[name])) for name in names))
        console.print(records)
    else:
        console.print(Text("None of the rows read would leave."))

    if preview.rejected:
        rejects = Table(title="Rows that would be rejected (not sent)", title_justify="left")
        rejects.add_column("line", justify="right")
        rejects.add_column("field")
        rejects.add_column("reason", overflow="fold")
        for reject in preview.rejected:
            rejects.add_row(str(reject.line), Text(reject.field), Text(reject.reason))
        console.print(rejects)
    else:
        console.print(Text("None of the rows read would be rejected."))


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _cell(value: str | float) -> str:
    return f"{value:g}" if isinstance(value, float) else value


# --- command line ----------------------------------------------------------------------------


def _rows(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number of rows") from None
    if not 1 <= value <= MAX_ROWS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_ROWS}")
    return value


def add_preview_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        required=True,
        type=Path,
        metavar="FILE",
        help="the agent's TOML config; relative paths inside it are read from its folder "
        "(example: --config agent-health.toml)",
    )
    parser.add_argument(
        "--rows",
        type=_rows,
        default=DEFAULT_ROWS,
        metavar="N",
        help=f"how many source rows to read from the top of the source, rejected ones included "
        f"(default {DEFAULT_ROWS}, at most {MAX_ROWS}; example: --rows 50)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object on stdout instead of tables: {"contract", "source", "rows_read", '
        '"columns", "fields", "records", "rejected", ...} (example: --json > what-leaves.json)',
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="do not contact the gateway; use the contract the last `agent push` cached in state_dir "
        "(example: --offline on a machine without network)",
    )


def run_preview(args: argparse.Namespace) -> int:
    config = load_config(args.config)

    def notify(line: str) -> None:
        sys.stderr.write(f"agent: {line}\n")

    preview = build_preview(config, rows=args.rows, offline=args.offline, notify=notify)
    if args.json:
        sys.stdout.write(json.dumps(preview.as_dict()) + "\n")
    else:
        # a pipe or file gets a wide table rather than rich's 80-column default
        render(preview, width=None if sys.stdout.isatty() else 160)
    return 0
