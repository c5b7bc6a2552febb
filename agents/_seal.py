"""Sealing a batch: columnar records, HPKE-sealed to the gateway, Ed25519-signed by the agency.

THE EXACT BYTE LAYOUT (the gateway's opener mirrors this; change both sides or neither):

1. plaintext  = RecordBatch.SerializeToString(deterministic=True)
                columnar: subject_tokens (32-byte T0 each), event_days (days since 1970-01-01,
                coarsened), one DimensionColumn per contract dimension in contract order whose
                dictionary is the contract domain in contract order and whose codes index it,
                one MeasureColumn per contract measure in contract order (values clamped).
2. batch_id   = SHA-256(
                    b"datashare/v1/batch-id" || 0x00 ||
                    agency  (UTF-8) || 0x00 ||
                    dataset (UTF-8) || 0x00 ||
                    source name (UTF-8, e.g. "csv:/abs/path/ed_visits.csv") || 0x00 ||
                    start position (UTF-8: the canonical JSON of where the batch starts in the
                        source, agents/_state.encode_position: a CSV byte offset, line number and
                        file fingerprint, or a database watermark) || 0x00 ||
                    SHA-256(plaintext)                       (32 raw bytes)
                ).hexdigest()[:32]                           -> 32 lower-case hex characters
                Same source, same position, same records => same id (DESIGN §6: source + watermark
                + content hash), so a batch re-read after a crash or resent from the spool is a
                DUPLICATE at the gateway, never stored twice.
3. header     = BatchHeader(agency, dataset, contract_version, batch_id, record_count,
                signing_key_id, sealed_at).SerializeToString(deterministic=True)
                sealed_at is RFC 3339 UTC to the second, e.g. "2025-01-31T12:00:00Z" (informational;
                it is not part of the batch id).
4. info       = b"datashare/v1/batch" || 0x00 || header
   ciphertext = hpke.Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
                    .encrypt(plaintext, gateway_public_key, info=info)
                i.e. RFC 9180 single-shot base mode, output enc (32 bytes) || AEAD ciphertext+tag,
                empty AAD; the header is bound through `info`, so a changed header fails to open.
5. signed     = b"datashare/v1/signature" || 0x00 || len(header) as 4 bytes big-endian ||
                header || ciphertext
   signature  = Ed25519 signature (64 bytes) of `signed` with the agency's signing key.
6. SealedBatch(header=header, ciphertext=ciphertext, signature=signature)

The gateway: parse the header, check agency matches the peer certificate, look up the agency's
enrolled key by signing_key_id, verify the signature over (5), open with info (4) and its private
key, parse the RecordBatch, check every column has record_count entries and every code and value
fits the contract of contract_version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from agents._contract import Contract
from agents._keys import SigningKey
from agents._mapping import MappedRecord
from agents._pb import ingest_pb2

BATCH_ID_CONTEXT = b"datashare/v1/batch-id\x00"
HPKE_INFO_CONTEXT = b"datashare/v1/batch\x00"
SIGNATURE_CONTEXT = b"datashare/v1/signature\x00"
BATCH_ID_HEX_CHARS = 32
HPKE_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


def hpke_info(header: bytes) -> bytes:
    return HPKE_INFO_CONTEXT + header


def signed_message(header: bytes, ciphertext: bytes) -> bytes:
    return SIGNATURE_CONTEXT + len(header).to_bytes(4, "big") + header + ciphertext


def batch_id(agency: str, dataset: str, source_name: str, start: str, plaintext: bytes) -> str:
    material = b"\x00".join(part.encode("utf-8") for part in (agency, dataset, source_name, start))
    digest = hashlib.sha256(BATCH_ID_CONTEXT + material + b"\x00" + hashlib.sha256(plaintext).digest())
    return digest.hexdigest()[:BATCH_ID_HEX_CHARS]


def record_batch(contract: Contract, records: Sequence[MappedRecord]) -> ingest_pb2.RecordBatch:
    """Columnar form of (at least one) mapped records; dimension dictionaries are the contract domains."""
    if not records:
        raise ValueError("a batch holds at least one record")
    tokens, days, codes, values = zip(*records, strict=True)
    # a record with no dimensions (or measures) has an empty tuple, which transposes to no columns
    columns: list[Sequence[Any]] = [tokens, days, *zip(*codes, strict=True), *zip(*values, strict=True)]
    return columns_batch(contract, columns)


def columns_batch(contract: Contract, columns: Sequence[Sequence[Any]]) -> ingest_pb2.RecordBatch:
    """The RecordBatch of columns laid out as agents._mapping.BatchColumns (at least one record)."""
    if not columns[0]:
        raise ValueError("a batch holds at least one record")
    dims = len(contract.dimensions)
    return ingest_pb2.RecordBatch(
        subject_tokens=columns[0],
        event_days=columns[1],
        dimensions=[
            ingest_pb2.DimensionColumn(name=d.name, dictionary=d.domain, codes=column)
            for d, column in zip(contract.dimensions, columns[2 : 2 + dims], strict=True)
        ],
        measures=[
            ingest_pb2.MeasureColumn(name=m.name, values=column)
            for m, column in zip(contract.measures, columns[2 + dims :], strict=True)
        ],
    )


@dataclass(frozen=True)
class SealedBatch:
    batch_id: str
    record_count: int
    message: ingest_pb2.SealedBatch


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Sealer:
    """Seals batches of one agency's dataset from one source; see the module docstring."""

    agency: str
    contract: Contract
    source_name: str
    signing_key: SigningKey
    gateway_key: X25519PublicKey
    clock: Callable[[], str] = _now

    def seal(self, records: Sequence[MappedRecord], start: str) -> SealedBatch:
        """Seal and sign `records`; `start` is the canonical text of the batch's start position."""
        return self.seal_batch(record_batch(self.contract, records), start)

    def seal_columns(self, columns: Sequence[Sequence[Any]], start: str) -> SealedBatch:
        """Seal and sign a batch given as columns (agents._mapping.BatchColumns)."""
        return self.seal_batch(columns_batch(self.contract, columns), start)

    def seal_batch(self, batch: ingest_pb2.RecordBatch, start: str) -> SealedBatch:
        records = len(batch.subject_tokens)
        plaintext = batch.SerializeToString(deterministic=True)
        identity = batch_id(self.agency, self.contract.dataset, self.source_name, start, plaintext)
        header = ingest_pb2.BatchHeader(
            agency=self.agency,
            dataset=self.contract.dataset,
            contract_version=self.contract.version,
            batch_id=identity,
            record_count=records,
            signing_key_id=self.signing_key.key_id,
            sealed_at=self.clock(),
        ).SerializeToString(deterministic=True)
        ciphertext = HPKE_SUITE.encrypt(plaintext, self.gateway_key, info=hpke_info(header))
        signature = self.signing_key.private_key.sign(signed_message(header, ciphertext))
        return SealedBatch(
            identity,
            records,
            ingest_pb2.SealedBatch(header=header, ciphertext=ciphertext, signature=signature),
        )
