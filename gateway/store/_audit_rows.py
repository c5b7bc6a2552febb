"""Audit entries to table rows and back, so that what is read hashes exactly as what was written."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any, cast

from gateway.audit._chain import NonCanonical, canonical_json, field_digests
from gateway.audit._types import SCHEMA_VERSION, AuditDraft, AuditEntry

_TEXT_FIELDS = (
    "decision_id",
    "timestamp",
    "path",
    "principal",
    "agency",
    "action",
    "outcome",
    "agreement_id",
    "purpose",
    "policy_revision",
    "query_fingerprint",
)
_COUNT_FIELDS = ("cells_released", "cells_withheld")
_POINTER_FIELDS = ("erased", "masked")  # JSON lists of JSON pointers (schema version 2)
_INT64_MAX = 2**63 - 1


def normalise(draft: AuditDraft) -> AuditDraft:
    """The draft as it will read back from either backend; ValueError if it cannot be stored.

    Latency is rounded to the microsecond so that its float repr reads back identically from any
    backend (see gateway.audit._chain). Text may not hold NUL, which PostgreSQL refuses and SQLite
    keeps: both backends must accept the same log.
    """
    for name in _TEXT_FIELDS:
        value = getattr(draft, name)
        if not isinstance(value, str) or "\x00" in value:
            raise ValueError(f"{name}: must be text without NUL")
    if type(draft.schema_version) is not int or not 1 <= draft.schema_version <= SCHEMA_VERSION:
        raise ValueError(f"schema_version: must be from 1 to {SCHEMA_VERSION}")
    reasons, erased, masked = (_texts(draft, name) for name in ("reasons", *_POINTER_FIELDS))
    if draft.schema_version == 1 and (erased or masked):
        raise ValueError("erased: needs schema version 2")
    for name in _COUNT_FIELDS:
        value = getattr(draft, name)
        if type(value) is not int or not 0 <= value <= _INT64_MAX:
            raise ValueError(f"{name}: must be a whole number from 0")
    latency = round(float(draft.latency_ms), 3)
    if not math.isfinite(latency):
        raise ValueError("latency_ms: must be a finite number")
    # as they will read back: the entry append_audit returns equals the one audit_entries lists
    input_doc = json.loads(canonical_json(draft.input, "input"))
    result_doc = json.loads(canonical_json(draft.result, "result"))
    normal = dataclasses.replace(
        draft,
        reasons=reasons,
        erased=erased,
        masked=masked,
        latency_ms=latency,
        input=input_doc,
        result=result_doc,
        digests={},
    )
    if normal.schema_version == 1:
        return normal
    return dataclasses.replace(normal, digests=field_digests(normal))


def _texts(draft: AuditDraft, name: str) -> tuple[str, ...]:
    value = getattr(draft, name)
    if not isinstance(value, tuple | list):
        raise TypeError(f"{name}: must be a sequence of text")
    if not all(isinstance(v, str) and "\x00" not in v for v in value):
        raise ValueError(f"{name}: must be text without NUL")
    return tuple(value)


def to_row(draft: AuditDraft, seq: int, prev_hash: str, entry_hash: str) -> dict[str, Any]:
    row: dict[str, Any] = {name: getattr(draft, name) for name in (*_TEXT_FIELDS, *_COUNT_FIELDS)}
    row.update(
        seq=seq,
        reasons=canonical_json(draft.reasons, "reasons"),
        latency_ms=draft.latency_ms,
        input=canonical_json(draft.input, "input"),
        result=canonical_json(draft.result, "result"),
        schema_version=draft.schema_version,
        erased=canonical_json(draft.erased, "erased"),
        masked=canonical_json(draft.masked, "masked"),
        digests=canonical_json(draft.digests, "digests"),
        prev_hash=prev_hash,
        hash=entry_hash,
    )
    return row


def from_row(row: Mapping[Any, Any]) -> AuditEntry:
    """An entry exactly as stored. A tampered row still loads, so that ``verify`` can name it:
    a field that is not in the form the store writes becomes ``NonCanonical``."""
    lists = {name: _stored_json(row[name], name, list) for name in ("reasons", *_POINTER_FIELDS)}
    return AuditEntry(
        **{name: row[name] for name in (*_TEXT_FIELDS, *_COUNT_FIELDS)},
        **cast(dict[str, Any], {name: tuple(v) if isinstance(v, list) else v for name, v in lists.items()}),
        schema_version=row["schema_version"],
        digests=_stored_json(row["digests"], "digests", dict),
        latency_ms=_stored_float(row["latency_ms"]),
        input=_stored_json(row["input"], "input", dict),
        result=_stored_json(row["result"], "result", dict),
        seq=int(row["seq"]),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


def _stored_json(text: Any, field: str, kind: type) -> Any:
    try:
        value = json.loads(text)
        if isinstance(value, kind) and canonical_json(value, field) == text:
            return value
    except (TypeError, ValueError):
        pass
    return NonCanonical(field)


def _stored_float(value: Any) -> Any:
    # SQLite lets an edit put text in a REAL column; keep it unhashable rather than fail to list
    return float(value) if isinstance(value, int | float) else NonCanonical("latency_ms")
