"""Sealing: the byte layout the gateway relies on, tamper evidence, deterministic batch ids."""

from __future__ import annotations

import hashlib
import re

import pytest
from agent_testkit import AgencyKeys, make_contract, open_sealed
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents import Contract, Sealer, SigningKey, batch_id
from agents._config import MAX_BATCH_SIZE
from agents._mapping import MappedRecord
from agents._pb import ingest_pb2

START = '{"fingerprint":"ab","line":1,"offset":120}'
OTHER_START = '{"fingerprint":"cd","line":2,"offset":200}'
RECORDS: list[MappedRecord] = [
    (bytes([1]) * 32, 19797, (0, 1, 0, 0), (3.5,)),
    (bytes([2]) * 32, 19798, (2, 6, 2, 1), (0.0,)),
    (bytes([3]) * 32, 19799, (1, 0, 1, 2), (72.0,)),
]


def _sealer(
    keys: AgencyKeys, *, clock: str = "2025-01-31T12:00:00Z", source: str = "csv:/data/ed.csv"
) -> Sealer:
    return Sealer(
        agency="health",
        contract=Contract.from_proto(make_contract()),
        source_name=source,
        signing_key=SigningKey("health-1", keys.signing_private),
        gateway_key=keys.hpke_private.public_key(),
        clock=lambda: clock,
    )


def test_sealed_batch_opens_to_the_same_records(agency_keys: AgencyKeys) -> None:
    """The server side, written from the proto comments, verifies, opens and reads back every column."""
    sealed = _sealer(agency_keys).seal(RECORDS, start=START)

    header, batch = open_sealed(
        sealed.message, agency_keys.hpke_private, agency_keys.signing_private.public_key()
    )

    assert (header.agency, header.dataset, header.contract_version) == ("health", "ed_visits", 3)
    assert (header.batch_id, header.record_count, header.signing_key_id) == (sealed.batch_id, 3, "health-1")
    assert header.sealed_at == "2025-01-31T12:00:00Z"
    assert list(batch.subject_tokens) == [r[0] for r in RECORDS]
    assert list(batch.event_days) == [19797, 19798, 19799]
    columns = {d.name: [d.dictionary[c] for c in d.codes] for d in batch.dimensions}
    assert columns == {
        "district": ["D01", "D03", "D02"],
        "age_band": ["18-24", "65+", "0-17"],
        "sex": ["F", "X", "M"],
        "presentation": ["overdose", "injury", "other"],
    }
    assert [list(m.values) for m in batch.measures] == [[3.5, 0.0, 72.0]]


def test_batch_id_is_32_hex_and_deterministic(agency_keys: AgencyKeys) -> None:
    """Same source, position and content give the same id, whatever the time of sealing."""
    first = _sealer(agency_keys, clock="2025-01-31T12:00:00Z").seal(RECORDS, start=START)
    again = _sealer(agency_keys, clock="2026-06-01T00:00:00Z").seal(RECORDS, start=START)
    assert re.fullmatch(r"[0-9a-f]{32}", first.batch_id)
    assert first.batch_id == again.batch_id
    assert first.message.ciphertext != again.message.ciphertext  # HPKE is randomised


@pytest.mark.parametrize(
    "change",
    ["content", "line", "source"],
)
def test_batch_id_changes_with_content_position_or_source(agency_keys: AgencyKeys, change: str) -> None:
    """A different record, starting line or source gives a different id."""
    base = _sealer(agency_keys).seal(RECORDS, start=START).batch_id
    if change == "content":
        other = _sealer(agency_keys).seal(RECORDS[:2], start=START).batch_id
    elif change == "line":
        other = _sealer(agency_keys).seal(RECORDS, start=OTHER_START).batch_id
    else:
        other = _sealer(agency_keys, source="csv:/data/other.csv").seal(RECORDS, start=START).batch_id
    assert other != base


def test_batch_id_matches_the_documented_layout(agency_keys: AgencyKeys) -> None:
    """batch_id is SHA-256 over the documented fields, cut to 32 hex characters."""
    sealed = _sealer(agency_keys).seal(RECORDS, start=START)
    _header, batch = open_sealed(
        sealed.message, agency_keys.hpke_private, agency_keys.signing_private.public_key()
    )
    plaintext = batch.SerializeToString(deterministic=True)
    material = (
        b"datashare/v1/batch-id\x00health\x00ed_visits\x00csv:/data/ed.csv\x00" + START.encode() + b"\x00"
    )
    expected = hashlib.sha256(material + hashlib.sha256(plaintext).digest()).hexdigest()[:32]
    assert (
        sealed.batch_id == expected == batch_id("health", "ed_visits", "csv:/data/ed.csv", START, plaintext)
    )


def _tampered(message: ingest_pb2.SealedBatch, part: str) -> ingest_pb2.SealedBatch:
    copy = ingest_pb2.SealedBatch()
    copy.CopyFrom(message)
    if part == "header":
        header = ingest_pb2.BatchHeader.FromString(copy.header)
        header.record_count += 1
        copy.header = header.SerializeToString()
    else:
        data = bytearray(copy.ciphertext)
        data[len(data) // 2] ^= 0x01
        copy.ciphertext = bytes(data)
    return copy


@pytest.mark.parametrize("part", ["header", "ciphertext"])
def test_tampering_breaks_the_signature(agency_keys: AgencyKeys, part: str) -> None:
    """Changing one bit of the header or the ciphertext fails signature verification."""
    sealed = _sealer(agency_keys).seal(RECORDS, start=START)
    with pytest.raises(InvalidSignature):
        open_sealed(
            _tampered(sealed.message, part),
            agency_keys.hpke_private,
            agency_keys.signing_private.public_key(),
        )


def test_swapped_header_fails_to_open_even_when_re_signed(agency_keys: AgencyKeys) -> None:
    """The header is bound into the seal: re-signing a changed header still cannot open the batch."""
    sealed = _sealer(agency_keys).seal(RECORDS, start=START)
    forged = _tampered(sealed.message, "header")
    forged.signature = agency_keys.signing_private.sign(
        b"datashare/v1/signature\x00"
        + len(forged.header).to_bytes(4, "big")
        + forged.header
        + forged.ciphertext
    )
    with pytest.raises(InvalidTag):
        open_sealed(forged, agency_keys.hpke_private, agency_keys.signing_private.public_key())


def test_other_agency_key_does_not_verify(agency_keys: AgencyKeys) -> None:
    """A batch signed by one agency does not verify under another agency's key."""
    sealed = _sealer(agency_keys).seal(RECORDS, start=START)
    with pytest.raises(InvalidSignature):
        open_sealed(sealed.message, agency_keys.hpke_private, Ed25519PrivateKey.generate().public_key())


def test_empty_batch_is_not_sealed(agency_keys: AgencyKeys) -> None:
    """The agent never sends an empty batch."""
    with pytest.raises(ValueError, match="at least one record"):
        _sealer(agency_keys).seal([], start=START)


def test_largest_batch_stays_well_under_grpc_default_message_limit(agency_keys: AgencyKeys) -> None:
    """A sealed batch of MAX_BATCH_SIZE records, each as large as the contract allows (the widest
    varints, the last code of every domain), is under a third of gRPC's default 4 MiB limit."""
    widest: MappedRecord = (bytes([255]) * 32, -(2**31), (2, 6, 2, 2), (72.0,))

    sealed = _sealer(agency_keys).seal([widest] * MAX_BATCH_SIZE, start=START)

    assert sealed.message.ByteSize() < 4 * 1024 * 1024 / 3
