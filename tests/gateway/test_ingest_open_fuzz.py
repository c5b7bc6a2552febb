"""Fuzzing the sealed-batch opener the way the Ingest service drives it (parse_header, then
BatchOpener.open). A valid batch mutated in any way (bit flips, truncation, extension, swapped
signatures, wrong keys, a header replayed onto another batch) and a correctly sealed batch whose
records are junk both end in BatchRejected (INVALID_ARGUMENT) naming the part at fault, in the
opener's fixed sentences: never another exception, never records that break the contract."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from fuzz_strategies import fuzz_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway._pb import ingest_pb2
from gateway.catalogue import Catalogue
from gateway.errors import BatchRejected
from gateway.ingest import BatchOpener, OpenedBatch, parse_header, signed_message
from gateway.ingest._open import MAX_RECORDS_PER_BATCH, SEAL_INFO_PREFIX, TOKEN_BYTES

pytestmark = pytest.mark.fuzz

SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
HPKE_KEY = X25519PrivateKey.generate()
SIGNING_KEY = Ed25519PrivateKey.generate()
OTHER_AGENCY_KEY = Ed25519PrivateKey.generate()  # enrolled, but for police
STRANGER_KEY = Ed25519PrivateKey.generate()  # enrolled nowhere
STRANGER_HPKE = X25519PrivateKey.generate()
OPENER = BatchOpener(
    HPKE_KEY,
    bytes(range(32)),
    {"health": {"k1": SIGNING_KEY.public_key()}, "police": {"p1": OTHER_AGENCY_KEY.public_key()}},
)
CATALOGUE = Catalogue.from_data(
    {
        "agencies": {"health": {}, "police": {}},
        "catalogue": {
            "datasets": {
                "visits": {
                    "owner": "health",
                    "version": 1,
                    "dimensions": {
                        "district": {"domain": ["D01", "D02"]},
                        "sex": {"domain": ["F", "M", "X"]},
                    },
                    "measures": {"stay_hours": {"min": 0, "max": 72}},
                },
                "monthly": {
                    "owner": "health",
                    "version": 1,
                    "event_date_granularity": "month",
                    "dimensions": {"district": {"domain": ["D01", "D02"]}},
                },
            }
        },
    }
)
DAY_RANGE = (-25567, 84005)  # 1900-01-01 .. 2199-12-31, as days since 1970-01-01
# The opener's sentences, contract names written C and numbers N.
PROBLEMS = {
    "header": {"is not a serialised BatchHeader"},
    "header.*": {
        "must be a printable, non-empty string of at most N characters",
        "must be between N and N",
        "is not a signing key enrolled for this agency",
    },
    "signature": {"does not verify against the agency's enrolled key"},
    "ciphertext": {"cannot be opened with the gateway's key", "does not hold a record batch"},
    "records.*": {
        "count differs from header.record_count",
        "every token must be N bytes",
        "a date lies outside N-N",
        "dates must be coarsened to the first of the month",
        "a column appears twice",
        "missing contract column C",
        "holds a column the contract does not name",
        "holds a value outside the contract's domain",
        "a code points outside its dictionary",
        "a value lies outside the contract's clamp bounds",
    },
}


@dataclass(frozen=True)
class Records:
    tokens: list[bytes]
    days: list[int]
    dimensions: list[tuple[str, list[str], list[int]]]
    measures: list[tuple[str, list[float]]]

    def batch(self) -> ingest_pb2.RecordBatch:
        batch = ingest_pb2.RecordBatch(subject_tokens=self.tokens, event_days=self.days)
        for name, dictionary, codes in self.dimensions:
            batch.dimensions.add(name=name, dictionary=dictionary, codes=codes)
        for name, values in self.measures:
            batch.measures.add(name=name, values=values)
        return batch


def header_bytes(count: int, *, dataset: str = "visits", batch_id: str = "b-1", **fields: object) -> bytes:
    values: dict[str, object] = {
        "agency": "health",
        "dataset": dataset,
        "contract_version": 1,
        "batch_id": batch_id,
        "record_count": count,
        "signing_key_id": "k1",
        "sealed_at": "2026-01-01T00:00:00Z",
    }
    values.update(fields)
    return ingest_pb2.BatchHeader(**values).SerializeToString()  # type: ignore[arg-type]


def seal(
    plaintext: bytes,
    header: bytes,
    *,
    to: X25519PrivateKey = HPKE_KEY,
    signer: Ed25519PrivateKey = SIGNING_KEY,
) -> ingest_pb2.SealedBatch:
    ciphertext = SUITE.encrypt(plaintext, to.public_key(), info=SEAL_INFO_PREFIX + header)
    return ingest_pb2.SealedBatch(
        header=header, ciphertext=ciphertext, signature=signer.sign(signed_message(header, ciphertext))
    )


def valid_records(n: int, seed: int) -> Records:
    tokens = [hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(n)]
    return Records(
        tokens=tokens,
        days=[19_000 + (seed + i) % 300 for i in range(n)],
        dimensions=[("district", ["D01", "D02"], [i % 2 for i in range(n)]), ("sex", ["X"], [0] * n)],
        measures=[("stay_hours", [float((seed * i) % 73) for i in range(n)])],
    )


def valid_sealed(n: int, seed: int) -> ingest_pb2.SealedBatch:
    plaintext = valid_records(n, seed).batch().SerializeToString()
    return seal(plaintext, header_bytes(n, batch_id=f"b-{seed}"))


def open_as_the_service_does(sealed: ingest_pb2.SealedBatch) -> OpenedBatch:
    header = parse_header(sealed.header)
    dataset = CATALOGUE.dataset(header.dataset)
    if dataset is None:  # the service refuses this before opening (PERMISSION_DENIED)
        raise BatchRejected("header.dataset", "(unknown: refused by the service before opening)")
    return OPENER.open(sealed, header, dataset)


def assert_rejected_in_plain_words(sealed: ingest_pb2.SealedBatch) -> BatchRejected:
    """The batch is refused with INVALID_ARGUMENT, naming the part at fault in a fixed sentence."""
    with pytest.raises(BatchRejected) as caught:
        open_as_the_service_does(sealed)
    error = caught.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    part = re.sub(r"\..*", ".*", error.field)
    problem = error.message.removeprefix(f"{error.field}: ")
    problem = re.sub(r"'[a-z_]+'", "C", re.sub(r"[0-9]+", "N", problem))
    if error.field == "header.dataset":
        return error
    assert re.fullmatch(
        r"header|signature|ciphertext|header\.[a-z_]+|records\.[a-z_]+(\[[a-z_]+\])?", error.field
    )
    assert problem in PROBLEMS[part], error.message
    return error


def assert_opened_within_contract(opened: OpenedBatch, dataset_name: str) -> None:
    dataset = CATALOGUE.datasets[dataset_name]
    n = opened.meta.record_count
    assert 0 < n <= MAX_RECORDS_PER_BATCH
    assert len(opened.records.subjects) == len(opened.records.event_days) == n
    assert all(len(s) == 32 for s in opened.records.subjects)
    assert all(DAY_RANGE[0] <= d <= DAY_RANGE[1] for d in opened.records.event_days)
    for dim in dataset.dimensions:
        assert len(opened.records.dimensions[dim.name]) == n
        assert set(opened.records.dimensions[dim.name]) <= set(dim.domain)
    for measure in dataset.measures:
        values = opened.records.measures[measure.name]
        assert len(values) == n and all(measure.min <= v <= measure.max for v in values)


# --- mutations of a valid batch ---------------------------------------------------------------

Mutation = Callable[[ingest_pb2.SealedBatch, st.DataObject], ingest_pb2.SealedBatch]
PARTS = ("header", "ciphertext", "signature")


def _replace(sealed: ingest_pb2.SealedBatch, **parts: bytes) -> ingest_pb2.SealedBatch:
    out = ingest_pb2.SealedBatch()
    out.CopyFrom(sealed)
    for name, value in parts.items():
        setattr(out, name, value)
    return out


def flip_bits(sealed: ingest_pb2.SealedBatch, data: st.DataObject) -> ingest_pb2.SealedBatch:
    part = data.draw(st.sampled_from(PARTS))
    raw = bytearray(getattr(sealed, part))
    for at in data.draw(st.lists(st.integers(0, len(raw) * 8 - 1), min_size=1, max_size=4, unique=True)):
        raw[at // 8] ^= 1 << (at % 8)
    return _replace(sealed, **{part: bytes(raw)})


def truncate(sealed: ingest_pb2.SealedBatch, data: st.DataObject) -> ingest_pb2.SealedBatch:
    part = data.draw(st.sampled_from(PARTS))
    raw = getattr(sealed, part)
    keep = data.draw(st.integers(0, len(raw) - 1))
    return _replace(sealed, **{part: raw[:keep] if data.draw(st.booleans()) else raw[len(raw) - keep :]})


def extend(sealed: ingest_pb2.SealedBatch, data: st.DataObject) -> ingest_pb2.SealedBatch:
    part = data.draw(st.sampled_from(PARTS))
    extra = data.draw(st.binary(min_size=1, max_size=64))
    raw = getattr(sealed, part)
    return _replace(sealed, **{part: raw + extra if data.draw(st.booleans()) else extra + raw})


def swap_with_another_batch(sealed: ingest_pb2.SealedBatch, data: st.DataObject) -> ingest_pb2.SealedBatch:
    """One or two parts taken from another valid batch of the same agency (a replay onto it)."""
    # seeds above the test's own 0..1000: never the batch itself
    other = valid_sealed(data.draw(st.integers(1, 5)), data.draw(st.integers(1_001, 2_000)))
    parts = data.draw(st.sets(st.sampled_from(PARTS), min_size=1, max_size=2))
    return _replace(sealed, **{p: getattr(other, p) for p in parts})


def resign(sealed: ingest_pb2.SealedBatch, data: st.DataObject) -> ingest_pb2.SealedBatch:
    """Signed (and sealed) with the wrong key, or a header rewritten and signed with the right one."""
    plaintext = valid_records(3, 7).batch().SerializeToString()
    choice = data.draw(st.sampled_from(["stranger", "other-agency", "stranger-hpke", "rewritten"]))
    if choice == "stranger":
        return seal(plaintext, header_bytes(3), signer=STRANGER_KEY)
    if choice == "other-agency":
        return seal(plaintext, header_bytes(3, signing_key_id="p1"), signer=OTHER_AGENCY_KEY)
    if choice == "stranger-hpke":
        return seal(plaintext, header_bytes(3), to=STRANGER_HPKE)
    # the header the seal was bound to, rewritten, then validly signed: the seal no longer opens
    good = seal(plaintext, header_bytes(3))
    rewritten = header_bytes(
        data.draw(st.integers(1, 10)), batch_id=data.draw(st.sampled_from(["b-1", "b-2"])), sealed_at="later"
    )
    return ingest_pb2.SealedBatch(
        header=rewritten,
        ciphertext=good.ciphertext,
        signature=SIGNING_KEY.sign(signed_message(rewritten, good.ciphertext)),
    )


MUTATIONS: dict[str, Mutation] = {
    "flip_bits": flip_bits,
    "truncate": truncate,
    "extend": extend,
    "swap": swap_with_another_batch,
    "resign": resign,
}


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 20),
    seed=st.integers(0, 1_000),
    mutation=st.sampled_from(sorted(MUTATIONS)),
    data=st.data(),
)
def test_a_mutated_valid_batch_is_rejected_naming_the_part(
    n: int, seed: int, mutation: str, data: st.DataObject
) -> None:
    """Whatever is done to a valid sealed batch, it is refused in plain words and yields no records."""
    sealed = valid_sealed(n, seed)
    assert_opened_within_contract(open_as_the_service_does(sealed), "visits")  # the control
    mutated = MUTATIONS[mutation](sealed, data)
    assert mutated.SerializeToString() != sealed.SerializeToString()
    assert_rejected_in_plain_words(mutated)


# --- junk records, correctly sealed and signed (a buggy or compromised agent) -----------------

_NAMES = st.sampled_from(["district", "sex", "stay_hours", "DISTRICT", ""]) | fuzz_text(20)
_VALUES = st.sampled_from(["D01", "D02", "F", "M", "X", "d01", ""]) | fuzz_text(10)
_TOKENS = st.one_of(
    st.binary(min_size=TOKEN_BYTES, max_size=TOKEN_BYTES),
    st.binary(max_size=40),
)
_DAYS = st.one_of(
    st.integers(*DAY_RANGE),
    st.sampled_from([DAY_RANGE[0] - 1, DAY_RANGE[1] + 1]),
    st.integers(-(2**31), 2**31 - 1),
)
_FLOATS = st.one_of(st.floats(0, 72), st.floats(allow_nan=True, allow_infinity=True))


@st.composite
def junk_records(draw: st.DrawFn) -> tuple[int, Records]:
    n = draw(st.integers(1, 30))
    count = draw(st.sampled_from([n, n, n, n + 1, n - 1]))

    def column(strategy: st.SearchStrategy[object]) -> list[object]:
        size = draw(st.sampled_from([n, n, n, 0, n + 1, max(n - 1, 0)]))
        return draw(st.lists(strategy, min_size=size, max_size=size))

    dimensions = [
        (
            draw(_NAMES),
            draw(st.lists(_VALUES, max_size=4)),
            column(st.integers(0, 5) | st.integers(0, 2**32 - 1)),
        )
        for _ in range(draw(st.integers(0, 3)))
    ]
    if draw(st.booleans()):  # mostly the contract's own columns, so the value checks are reached
        dimensions = [
            ("district", draw(st.lists(_VALUES, max_size=3)), column(st.integers(0, 3))),
            ("sex", draw(st.lists(_VALUES, max_size=3)), column(st.integers(0, 3))),
        ]
    measures = [(draw(_NAMES), column(_FLOATS)) for _ in range(draw(st.integers(0, 2)))]
    if draw(st.booleans()):
        measures = [("stay_hours", column(_FLOATS))]
    records = Records(
        tokens=column(_TOKENS),  # type: ignore[arg-type]
        days=column(_DAYS),  # type: ignore[arg-type]
        dimensions=dimensions,  # type: ignore[arg-type]
        measures=measures,  # type: ignore[arg-type]
    )
    return count, records


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(case=junk_records(), dataset=st.sampled_from(["visits", "monthly"]))
def test_junk_records_under_a_valid_seal_are_refused_or_fit_the_contract(
    case: tuple[int, Records], dataset: str
) -> None:
    """Records that are not what the contract says are refused by name; whatever opens fits it."""
    count, records = case
    sealed = seal(records.batch().SerializeToString(), header_bytes(count, dataset=dataset))
    try:
        opened = open_as_the_service_does(sealed)
    except BatchRejected:
        assert_rejected_in_plain_words(sealed)
    else:
        assert_opened_within_contract(opened, dataset)


@given(raw=st.binary(max_size=200) | st.builds(lambda b: b * 200, st.binary(min_size=1, max_size=8)))
def test_any_header_bytes_parse_or_are_refused_by_name(raw: bytes) -> None:
    """parse_header turns any bytes into a checked header or BatchRejected naming header(.field)."""
    try:
        header = parse_header(raw)
    except BatchRejected as caught:
        field = caught.field
    else:
        field = ""
        assert 0 < header.record_count <= MAX_RECORDS_PER_BATCH
        assert all(
            0 < len(getattr(header, f)) <= 63 for f in ("agency", "dataset", "batch_id", "signing_key_id")
        )
    assert field in ("", "header") or field.startswith("header.")
