"""Opening a pushed batch: verify the agency signature, open the HPKE seal, check every record
against the dataset contract, and re-key the tokens (DESIGN §3, §6).

Byte layout (mirrors agents/_seal.py; the .proto comments are the contract):
    signature = Ed25519(b"datashare/v1/signature\\x00" || len(header) as u32 BE || header || ciphertext)
    ciphertext = HPKE-single-shot(DHKEM(X25519,HKDF-SHA256), HKDF-SHA256, AES-256-GCM,
                                  info = b"datashare/v1/batch\\x00" || header)
The header is signed and bound into the seal as the exact bytes sent, so it cannot be swapped
between batches. Errors name the part at fault and never a value from inside the batch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from google.protobuf.message import DecodeError

from gateway._pb import ingest_pb2
from gateway.catalogue import Dataset
from gateway.errors import BatchRejected
from gateway.store._base import BatchMeta, RecordColumns

SEAL_INFO_PREFIX = b"datashare/v1/batch\x00"
SIGNATURE_PREFIX = b"datashare/v1/signature\x00"
TOKEN_BYTES = 32
MAX_RECORDS_PER_BATCH = 100_000
# Event days must fall between 1900-01-01 and 2199-12-31: anything else is a mapping error.
_MIN_DAY, _MAX_DAY = -25567, 84005
_SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)


def signed_message(header: bytes, ciphertext: bytes) -> bytes:
    return SIGNATURE_PREFIX + len(header).to_bytes(4, "big") + header + ciphertext


def parse_header(raw: bytes) -> ingest_pb2.BatchHeader:
    try:
        header = ingest_pb2.BatchHeader.FromString(raw)
    except DecodeError as exc:
        raise BatchRejected("header", "is not a serialised BatchHeader") from exc
    for name in ("agency", "dataset", "batch_id", "signing_key_id"):
        value = getattr(header, name)
        if not value or len(value) > 63 or not value.isprintable():
            raise BatchRejected(
                f"header.{name}", "must be a printable, non-empty string of at most 63 characters"
            )
    if not 0 < header.record_count <= MAX_RECORDS_PER_BATCH:
        raise BatchRejected("header.record_count", f"must be between 1 and {MAX_RECORDS_PER_BATCH}")
    return header


@dataclass(frozen=True)
class OpenedBatch:
    meta: BatchMeta
    records: RecordColumns


class BatchOpener:
    """Holds the gateway's secrets for opening batches; one per process."""

    def __init__(
        self,
        hpke_private: X25519PrivateKey,
        rest_key: bytes,
        agency_keys: Mapping[str, Mapping[str, Ed25519PublicKey]],
    ) -> None:
        self._hpke_private = hpke_private
        self._rest = _keyed_hmac(rest_key)
        self._agency_keys = agency_keys

    def open(
        self, sealed: ingest_pb2.SealedBatch, header: ingest_pb2.BatchHeader, dataset: Dataset
    ) -> OpenedBatch:
        """Verify, open and validate; BatchRejected (nothing stored) on any failure."""
        key = self._agency_keys.get(header.agency, {}).get(header.signing_key_id)
        if key is None:
            raise BatchRejected("header.signing_key_id", "is not a signing key enrolled for this agency")
        try:
            key.verify(sealed.signature, signed_message(sealed.header, sealed.ciphertext))
        except InvalidSignature as exc:
            raise BatchRejected("signature", "does not verify against the agency's enrolled key") from exc
        try:
            plaintext = _SUITE.decrypt(
                sealed.ciphertext, self._hpke_private, info=SEAL_INFO_PREFIX + sealed.header
            )
        except Exception as exc:
            raise BatchRejected("ciphertext", "cannot be opened with the gateway's key") from exc
        try:
            batch = ingest_pb2.RecordBatch.FromString(plaintext)
        except DecodeError as exc:
            raise BatchRejected("ciphertext", "does not hold a record batch") from exc
        records = self._validate(batch, header.record_count, dataset)
        meta = BatchMeta(
            # namespaced by agency, so no agency can claim, or learn of, another's batch ids
            batch_id=f"{header.agency}:{header.batch_id}",
            agency=header.agency,
            dataset=header.dataset,
            contract_version=header.contract_version,
            record_count=header.record_count,
            # the records, not the header: a resend re-sealed later differs only in sealed_at
            content_digest=hashlib.sha256(plaintext).hexdigest(),
        )
        return OpenedBatch(meta, records)

    def _validate(self, batch: ingest_pb2.RecordBatch, count: int, dataset: Dataset) -> RecordColumns:
        if len(batch.subject_tokens) != count:
            raise BatchRejected("records.subject_tokens", "count differs from header.record_count")
        if len(batch.event_days) != count:
            raise BatchRejected("records.event_days", "count differs from header.record_count")
        # Per-record checks run in C (set(map(...)), min, max, sum): a Python loop per record
        # costs more than storing it. Nothing is checked less than before.
        tokens = batch.subject_tokens
        if set(map(len, tokens)) != {TOKEN_BYTES}:
            raise BatchRejected("records.subject_tokens", f"every token must be {TOKEN_BYTES} bytes")
        days = list(batch.event_days)
        if min(days) < _MIN_DAY or max(days) > _MAX_DAY:
            raise BatchRejected("records.event_days", "a date lies outside 1900-2199")
        if dataset.granularity == "month" and any(_day_of_month(d) != 1 for d in set(days)):
            raise BatchRejected("records.event_days", "dates must be coarsened to the first of the month")
        return RecordColumns(
            subjects=self._rekey(tokens),
            event_days=days,
            dimensions=_dimensions(batch, count, dataset),
            measures=_measures(batch, count, dataset),
        )

    def _rekey(self, tokens: Sequence[bytes]) -> list[bytes]:
        """HMAC-SHA256(K_rest, token) each, from a pre-keyed object: a copy skips the key set-up.
        Computed once per distinct token: a batch holds a person's records several times over
        (2.9 a person in the benchmark's export), and the lookups run in C."""
        keyed = self._rest.copy  # bound once: this loop runs once per distinct token
        rekeyed = dict.fromkeys(tokens, b"")
        for token in rekeyed:
            mac = keyed()
            mac.update(token)
            rekeyed[token] = mac.digest()
        return list(map(rekeyed.__getitem__, tokens))


class _Mac(Protocol):
    def copy(self) -> _Mac: ...

    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


def _keyed_hmac(key: bytes) -> _Mac:
    """HMAC-SHA256 keyed once: OpenSSL's HMAC object itself where the standard library exposes
    it, since ``hmac.HMAC`` wraps copy(), update() and digest() in Python (~0.7 µs a record)."""
    try:
        import _hashlib  # CPython's OpenSSL binding; hmac.new below where it is missing

        mac: _Mac = _hashlib.hmac_new(key, digestmod="sha256")
    except (ImportError, AttributeError, ValueError):
        mac = hmac.new(key, digestmod=hashlib.sha256)
    return mac


def _dimensions(batch: ingest_pb2.RecordBatch, count: int, dataset: Dataset) -> dict[str, list[str]]:
    columns = {c.name: c for c in batch.dimensions}
    if len(columns) != len(batch.dimensions):
        raise BatchRejected("records.dimensions", "a column appears twice")
    expected = {d.name for d in dataset.dimensions}
    _same_columns("records.dimensions", set(columns), expected)
    out: dict[str, list[str]] = {}
    for dim in dataset.dimensions:
        column = columns[dim.name]
        where = f"records.dimensions[{dim.name}]"
        if len(column.codes) != count:
            raise BatchRejected(where, "count differs from header.record_count")
        domain = set(dim.domain)
        if any(value not in domain for value in column.dictionary):
            raise BatchRejected(where, "holds a value outside the contract's domain")
        if column.codes and max(column.codes) >= len(column.dictionary):
            raise BatchRejected(where, "a code points outside its dictionary")
        # codes are uint32 (never negative) and below len(dictionary), checked just above
        out[dim.name] = list(map(list(column.dictionary).__getitem__, column.codes))
    return out


def _measures(batch: ingest_pb2.RecordBatch, count: int, dataset: Dataset) -> dict[str, list[float]]:
    columns = {c.name: c for c in batch.measures}
    if len(columns) != len(batch.measures):
        raise BatchRejected("records.measures", "a column appears twice")
    _same_columns("records.measures", set(columns), {m.name for m in dataset.measures})
    out: dict[str, list[float]] = {}
    for measure in dataset.measures:
        values = list(columns[measure.name].values)
        where = f"records.measures[{measure.name}]"
        if len(values) != count:
            raise BatchRejected(where, "count differs from header.record_count")
        if not _within(values, measure.min, measure.max):
            raise BatchRejected(where, "a value lies outside the contract's clamp bounds")
        out[measure.name] = values
    return out


def _within(values: list[float], low: float, high: float) -> bool:
    """Every value finite and in [low, high]. min and max are only trusted once the sum shows
    no NaN or infinity is present (a NaN compares false and could hide from either)."""
    if not values:
        return True
    if math.isfinite(sum(values)):
        return low <= min(values) and max(values) <= high
    # a NaN or an infinity somewhere, or finite values whose sum overflowed: look at each
    return all(math.isfinite(v) and low <= v <= high for v in values)


def _same_columns(where: str, got: set[str], expected: set[str]) -> None:
    if missing := sorted(expected - got):
        raise BatchRejected(where, f"missing contract column {missing[0]!r}")
    if got - expected:
        raise BatchRejected(where, "holds a column the contract does not name")


def _day_of_month(day: int) -> int:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).day
