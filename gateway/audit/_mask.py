"""The decision log's mask, as OPA's ``system.log.mask``: the policy rule
``datashare/log/mask`` looks at the decision event (``input.input``, ``input.result``,
``input.path``, ``input.action``) and returns what must not be stored: JSON pointers to erase
(``"/input/request/values"``) and upserts (``{"op": "upsert", "path": ..., "value": ...}``).
Applied here, before the entry is built; the pointers applied go into the entry's ``erased`` and
``masked`` lists, so the log says what it does not hold.

Pure functions. Anything malformed is a ``MaskError`` and the caller fails closed: the request is
denied and the entry stored without its input at all (never unmasked).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ROOTS = ("input", "result")


class MaskError(ValueError):
    """The mask rule's answer cannot be applied; the message names the fault, not a value."""


@dataclass(frozen=True)
class Masked:
    input: dict[str, Any]
    result: dict[str, Any]
    erased: tuple[str, ...]
    masked: tuple[str, ...]


def mask_event(input_doc: Mapping[str, Any], result: Mapping[str, Any], instructions: Any) -> Masked:
    """``input_doc`` and ``result`` with the mask rule's ``instructions`` applied (copies)."""
    if not isinstance(instructions, list | tuple | set | frozenset):
        raise MaskError("log mask: the rule must give a set of pointers and upserts")
    event: dict[str, Any] = {"input": copy.deepcopy(dict(input_doc)), "result": copy.deepcopy(dict(result))}
    erase: list[str] = []
    upserts: list[tuple[str, Any]] = []
    for item in instructions:
        if isinstance(item, str):
            erase.append(item)
        elif isinstance(item, Mapping) and item.get("op") == "upsert" and isinstance(item.get("path"), str):
            if "value" not in item:
                raise MaskError("log mask: an upsert has no value")
            upserts.append((item["path"], item["value"]))
        else:
            raise MaskError("log mask: an item is neither a pointer nor an upsert")
    erased = tuple(p for p in sorted(set(erase)) if _erase(event, _parts(p)))
    masked = []
    for pointer, value in sorted(upserts, key=lambda u: u[0]):
        if _upsert(event, _parts(pointer), copy.deepcopy(value)):
            masked.append(pointer)
    return Masked(event["input"], event["result"], erased, tuple(dict.fromkeys(masked)))


def _parts(pointer: str) -> list[str]:
    """RFC 6901 pointer to its reference tokens; it must start at /input or /result."""
    if not pointer.startswith("/"):
        raise MaskError("log mask: a pointer must start with '/'")
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]
    if parts[0] not in ROOTS or len(parts) < 2:
        raise MaskError("log mask: a pointer must name a part of /input or /result")
    return parts


def _parent(event: dict[str, Any], parts: list[str]) -> dict[str, Any] | None:
    node: Any = event
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, dict) else None


def _erase(event: dict[str, Any], parts: list[str]) -> bool:
    parent = _parent(event, parts)
    if parent is None or parts[-1] not in parent:
        return False  # nothing there: nothing erased, nothing to record (as OPA)
    del parent[parts[-1]]
    return True


def _upsert(event: dict[str, Any], parts: list[str], value: Any) -> bool:
    parent = _parent(event, parts)
    if parent is None:
        return False  # OPA creates the leaf only, under an existing object
    parent[parts[-1]] = value
    return True
