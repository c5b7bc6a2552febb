"""Hypothesis strategies the fuzzers share: hostile strings and hostile repetition."""

from __future__ import annotations

from typing import TypeVar

from hypothesis import settings
from hypothesis import strategies as st

T = TypeVar("T")

# Characters that have broken parsers and log lines elsewhere: NUL, line breaks, a byte-order
# mark, right-to-left override, a combining mark, a non-character, an ideographic space.
ODD = "\x00\r\n\t\x1f\x7f\u0085\u2028\ufeff\u202e\u0301\uffff\u3000\U0001f600"


def fuzz_text(max_size: int = 80) -> st.SearchStrategy[str]:
    """Any unicode (NUL included, lone surrogates excluded: protobuf cannot hold them), printable
    ASCII, the odd characters above, and strings far over every length limit."""
    return st.one_of(
        st.text(max_size=max_size),
        st.text(alphabet=st.characters(codec="ascii"), max_size=max_size),
        st.text(alphabet=st.sampled_from(ODD) | st.characters(codec="ascii"), max_size=max_size),
        st.builds(lambda c, n: c * n, st.sampled_from(["a", "\x00", "\u0301", "é"]), st.integers(60, 2_000)),
    )


def huge_or_small(element: st.SearchStrategy[T]) -> st.SearchStrategy[list[T]]:
    """A short list of ``element``, or one drawn element repeated thousands of times (at most ~10 MB with the longest string)."""
    return st.one_of(
        st.lists(element, max_size=5),
        st.builds(lambda e, n: [e] * n, element, st.integers(1_000, 5_000)),
    )


def examples(share: float) -> int:
    """``share`` of the loaded profile's max_examples, for a fuzzer whose examples cost more than
    most: it still scales with HYPOTHESIS_PROFILE=fuzz."""
    return max(5, int(settings.default.max_examples * share))


def varint(n: int) -> bytes:
    """``n`` as a protobuf base-128 varint, for writing wire bytes by hand."""
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)
