"""The log mask as a pure function: OPA's system.log.mask semantics on the decision event."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.audit import MaskError, mask_event

INPUT = {"principal": {"agency": "health", "name": "ann"}, "request": {"dataset": "ed_visits", "values": [1]}}
RESULT = {"allow": True, "obligations": {"k": 10}}


def test_erased_pointers_are_removed_and_listed() -> None:
    """Erase pointers remove the key from a copy and are listed, sorted; the originals stay whole."""
    masked = mask_event(INPUT, RESULT, ["/input/request/values", "/result/obligations"])
    assert masked.input == {
        "principal": {"agency": "health", "name": "ann"},
        "request": {"dataset": "ed_visits"},
    }
    assert masked.result == {"allow": True}
    assert masked.erased == ("/input/request/values", "/result/obligations")
    assert INPUT["request"] == {"dataset": "ed_visits", "values": [1]}


def test_upserts_replace_or_add_a_leaf_and_are_listed_as_masked() -> None:
    """An upsert replaces an existing value or adds a leaf under an existing object."""
    masked = mask_event(
        INPUT,
        RESULT,
        [
            {"op": "upsert", "path": "/input/principal/name", "value": "**"},
            {"op": "upsert", "path": "/input/principal/note", "value": "x"},
        ],
    )
    assert masked.input["principal"] == {"agency": "health", "name": "**", "note": "x"}
    assert masked.masked == ("/input/principal/name", "/input/principal/note")


def test_pointers_to_nothing_are_not_listed() -> None:
    """As in OPA, erasing or upserting under a path that is not there changes and lists nothing."""
    masked = mask_event(INPUT, RESULT, ["/input/nope", {"op": "upsert", "path": "/input/a/b", "value": 1}])
    assert (masked.input, masked.erased, masked.masked) == (INPUT, (), ())


def test_escaped_pointer_tokens_are_decoded() -> None:
    """~1 is '/' and ~0 is '~' inside a token (RFC 6901)."""
    masked = mask_event({"a/b~c": 1, "d": 2}, {}, ["/input/a~1b~0c"])
    assert masked.input == {"d": 2}


@pytest.mark.parametrize(
    "instructions",
    [
        "/input/x",
        ["input/x"],
        ["/principal/name"],
        ["/input"],
        [42],
        [{"op": "remove", "path": "/input/x"}],
        [{"op": "upsert", "path": "/input/x"}],
    ],
    ids=[
        "not-a-set",
        "relative",
        "outside-input-and-result",
        "whole-root",
        "number",
        "unknown-op",
        "no-value",
    ],
)
def test_a_malformed_mask_is_refused(instructions: Any) -> None:
    """Anything the gateway cannot apply exactly is a MaskError (the caller then fails closed)."""
    with pytest.raises(MaskError):
        mask_event(INPUT, RESULT, instructions)
