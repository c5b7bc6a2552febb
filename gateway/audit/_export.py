"""The audit log's export forms: JSON lines in OPA decision-log field names (which read back into
exactly the entry that was hashed, so an export verifies offline), and CSV for spreadsheets."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.audit._types import AuditEntry

BUNDLE_NAME = "datashare"
CSV_COLUMNS = (
    "seq",
    "decision_id",
    "timestamp",
    "path",
    "principal",
    "agency",
    "action",
    "agreement_id",
    "purpose",
    "outcome",
    "reasons",
    "policy_revision",
    "query_fingerprint",
    "cells_released",
    "cells_withheld",
    "latency_ms",
    "input",
    "result",
    "erased",
    "masked",
    "schema_version",
    "prev_hash",
    "hash",
)
_TEXT = (
    *("decision_id", "timestamp", "path", "principal", "agency", "action", "agreement_id", "purpose"),
    *("outcome", "query_fingerprint", "prev_hash", "hash"),
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ExportFormatError(ValueError):
    """An exported line is not an entry; the message names the line and field, never a value."""


def entry_doc(entry: AuditEntry) -> dict[str, Any]:
    """One decision in OPA decision-log field names where they exist, plus the chain's own."""
    return {
        "schema_version": entry.schema_version,
        "seq": entry.seq,
        "decision_id": entry.decision_id,
        "timestamp": entry.timestamp,
        "path": entry.path,
        "input": entry.input,
        "result": entry.result,
        "erased": list(entry.erased),
        "masked": list(entry.masked),
        "bundles": {BUNDLE_NAME: {"revision": entry.policy_revision}},
        "principal": entry.principal,
        "agency": entry.agency,
        "action": entry.action,
        "agreement_id": entry.agreement_id,
        "purpose": entry.purpose,
        "outcome": entry.outcome,
        "reasons": list(entry.reasons),
        "query_fingerprint": entry.query_fingerprint,
        "cells_released": entry.cells_released,
        "cells_withheld": entry.cells_withheld,
        "latency_ms": entry.latency_ms,
        "digests": dict(entry.digests),
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def entry_json(entry: AuditEntry) -> str:
    return json.dumps(entry_doc(entry), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_from_json(line: str, where: str) -> AuditEntry:
    """The entry an exported line holds, exactly as hashed; ValueError names the field at fault."""
    try:
        doc = json.loads(line)
    except ValueError as exc:
        raise ExportFormatError(f"{where}: not JSON") from exc
    if not isinstance(doc, Mapping):
        raise ExportFormatError(f"{where}: not a JSON object")
    values: dict[str, Any] = {name: _field(doc, name, str, where) for name in _TEXT}
    for name in ("seq", "cells_released", "cells_withheld", "schema_version"):
        values[name] = _field(doc, name, int, where)
    latency = doc.get("latency_ms")
    if isinstance(latency, bool) or not isinstance(latency, int | float):
        raise ExportFormatError(f"{where}.latency_ms: must be a number")
    values["latency_ms"] = float(latency)
    for name in ("reasons", "erased", "masked"):
        items = _field(doc, name, list, where)
        if not all(isinstance(i, str) for i in items):
            raise ExportFormatError(f"{where}.{name}: must be a list of text")
        values[name] = tuple(items)
    for name in ("input", "result", "digests"):
        values[name] = _field(doc, name, dict, where)
    bundles = _field(doc, "bundles", dict, where).get(BUNDLE_NAME)
    revision = bundles.get("revision") if isinstance(bundles, Mapping) else None
    if not isinstance(revision, str):
        raise ExportFormatError(f"{where}.bundles.{BUNDLE_NAME}.revision: must be text")
    return AuditEntry(**values, policy_revision=revision)


def csv_text(entries: Iterable[AuditEntry]) -> Iterable[str]:
    """A header and one row per entry; JSON columns as compact JSON. A text cell that a
    spreadsheet would run as a formula gets a leading apostrophe (the JSON export is verbatim)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    yield _drain(buffer)
    for entry in entries:
        doc = entry_doc(entry)
        doc["policy_revision"] = entry.policy_revision
        row = []
        for name in CSV_COLUMNS:
            value = doc[name]
            cell = (
                json.dumps(value, sort_keys=True, ensure_ascii=False)
                if isinstance(value, dict | list)
                else value
            )
            row.append("'" + cell if isinstance(cell, str) and cell.startswith(_FORMULA_START) else cell)
        writer.writerow(row)
        yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _field(doc: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    value = doc.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ExportFormatError(f"{where}.{name}: must be {_KIND.get(kind, kind.__name__)}")
    return value


_KIND = {str: "text", int: "a whole number", list: "a list", dict: "an object"}
