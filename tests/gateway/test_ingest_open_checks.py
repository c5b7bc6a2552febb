"""BatchOpener's per-record checks, which run as whole-column operations for speed: each still
refuses every bad record it refused when it looked at records one by one, and re-keys exactly
HMAC-SHA256(K_rest, token)."""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Sequence

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from gateway._pb import ingest_pb2
from gateway.catalogue import Catalogue
from gateway.errors import BatchRejected
from gateway.ingest import BatchOpener, parse_header, signed_message
from gateway.ingest._open import SEAL_INFO_PREFIX

REST_KEY = bytes(range(32))
HPKE_KEY = X25519PrivateKey.generate()
SIGNING_KEY = Ed25519PrivateKey.generate()


def _catalogue(max_hours: float) -> Catalogue:
    return Catalogue.from_data(
        {
            "agencies": {"health": {}},
            "catalogue": {
                "datasets": {
                    "visits": {
                        "owner": "health",
                        "version": 1,
                        "dimensions": {"district": {"domain": ["D01", "D02"]}},
                        "measures": {"stay_hours": {"min": 0, "max": max_hours}},
                    }
                }
            },
        }
    )


CATALOGUE = _catalogue(72)
DATASET = CATALOGUE.datasets["visits"]


def _opener() -> BatchOpener:
    return BatchOpener(HPKE_KEY, REST_KEY, {"health": {"k1": SIGNING_KEY.public_key()}})


def _sealed(
    tokens: Sequence[bytes],
    days: Sequence[int],
    codes: Sequence[int],
    stays: Sequence[float],
    dictionary: Sequence[str] = ("D01", "D02"),
) -> tuple[ingest_pb2.SealedBatch, ingest_pb2.BatchHeader]:
    batch = ingest_pb2.RecordBatch(subject_tokens=tokens, event_days=days)
    batch.dimensions.add(name="district", dictionary=dictionary, codes=codes)
    batch.measures.add(name="stay_hours", values=stays)
    header = ingest_pb2.BatchHeader(
        agency="health",
        dataset="visits",
        contract_version=1,
        batch_id="b-1",
        record_count=len(tokens),
        signing_key_id="k1",
        sealed_at="2026-01-01T00:00:00Z",
    ).SerializeToString()
    ciphertext = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM).encrypt(
        batch.SerializeToString(), HPKE_KEY.public_key(), info=SEAL_INFO_PREFIX + header
    )
    sealed = ingest_pb2.SealedBatch(
        header=header, ciphertext=ciphertext, signature=SIGNING_KEY.sign(signed_message(header, ciphertext))
    )
    return sealed, parse_header(header)


def _tokens(n: int) -> list[bytes]:
    return [hashlib.sha256(str(i).encode()).digest() for i in range(n)]


def test_a_valid_batch_opens_with_tokens_rekeyed_and_codes_decoded() -> None:
    """Subjects are HMAC-SHA256(K_rest, token) in order; codes become their dictionary values."""
    tokens = _tokens(3)
    sealed, header = _sealed(tokens, [19_000, 19_001, 19_002], [1, 0, 1], [0.0, 72.0, 3.5])
    opened = _opener().open(sealed, header, DATASET)
    assert list(opened.records.subjects) == [hmac.digest(REST_KEY, t, "sha256") for t in tokens]
    assert opened.records.dimensions["district"] == ["D02", "D01", "D02"]
    assert opened.records.measures["stay_hours"] == [0.0, 72.0, 3.5]


@pytest.mark.parametrize(
    "bad",
    [float("nan"), float("inf"), -float("inf"), 72.0001, -0.5],
    ids=["nan", "inf", "-inf", "above-max", "below-min"],
)
def test_a_single_bad_measure_anywhere_rejects_the_batch(bad: float) -> None:
    """NaN, infinities and out-of-bounds values are refused wherever they sit among good ones."""
    stays = [1.0] * 50
    stays[17] = bad
    sealed, header = _sealed(_tokens(50), [19_000] * 50, [0] * 50, stays)
    with pytest.raises(BatchRejected, match=r"records\.measures\[stay_hours\]"):
        _opener().open(sealed, header, DATASET)


def test_nan_and_infinity_together_are_refused() -> None:
    """inf and -inf sum to NaN and a NaN hides from min/max: the slow path still finds them."""
    stays = [1.0, float("inf"), -float("inf"), float("nan"), 2.0]
    sealed, header = _sealed(_tokens(5), [19_000] * 5, [0] * 5, stays)
    with pytest.raises(BatchRejected, match=r"records\.measures\[stay_hours\]"):
        _opener().open(sealed, header, DATASET)


def test_a_short_token_anywhere_rejects_the_batch() -> None:
    """One token of 31 bytes among 32-byte ones is refused, naming subject_tokens."""
    tokens = _tokens(20)
    tokens[9] = tokens[9][:31]
    sealed, header = _sealed(tokens, [19_000] * 20, [0] * 20, [1.0] * 20)
    with pytest.raises(BatchRejected, match=r"^records\.subject_tokens: every token must be 32 bytes$"):
        _opener().open(sealed, header, DATASET)


def test_a_code_past_the_dictionary_rejects_the_batch() -> None:
    """A code that points outside its dictionary is refused, not decoded into something else."""
    sealed, header = _sealed(_tokens(3), [19_000] * 3, [0, 2, 1], [1.0] * 3)
    with pytest.raises(BatchRejected, match=r"records\.dimensions\[district\]: a code points outside"):
        _opener().open(sealed, header, DATASET)


def test_values_whose_sum_overflows_are_judged_one_by_one() -> None:
    """Finite values within bounds whose float sum overflows are still accepted (no false refusal)."""
    wide = _catalogue(1.7e308).datasets["visits"]
    stays = [1.6e308, 1.6e308]
    assert not math.isfinite(sum(stays))
    sealed, header = _sealed(_tokens(2), [19_000] * 2, [0, 1], stays)
    assert _opener().open(sealed, header, wide).records.measures["stay_hours"] == stays
