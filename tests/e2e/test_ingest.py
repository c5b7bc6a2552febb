"""Pushing sealed batches: tampering is rejected, resends are stored once."""

from __future__ import annotations

import grpc
import pytest
from e2e_harness import Running, ed_rows, seal

from agents._pb import ingest_pb2


def _records(running: Running) -> int:
    return running.stored_rows("ed_visits")


def test_valid_batch_is_stored_and_counted(running: Running) -> None:
    """A correctly sealed and signed batch is acknowledged as stored and its records are counted."""
    ack = running.ingest("agent:health").PushBatch(
        seal(running.layout, "health", "ed_visits", ed_rows("D01", 20))
    )
    assert ack.status == ingest_pb2.PushAck.STATUS_STORED
    assert ack.records_stored == 20
    assert _records(running) == 20


def test_resent_batch_is_stored_once(running: Running) -> None:
    """Pushing the same batch id again is acknowledged as a duplicate and stores nothing more."""
    batch = seal(running.layout, "health", "ed_visits", ed_rows("D01", 20))
    stub = running.ingest("agent:health")
    first, second = stub.PushBatch(batch), stub.PushBatch(batch)
    assert (first.status, second.status) == (
        ingest_pb2.PushAck.STATUS_STORED,
        ingest_pb2.PushAck.STATUS_DUPLICATE,
    )
    assert _records(running) == 20


def test_batch_id_reused_for_other_records_is_refused(running: Running) -> None:
    """The same batch id with different records is refused rather than silently ignored or stored."""
    stub = running.ingest("agent:health")
    stub.PushBatch(seal(running.layout, "health", "ed_visits", ed_rows("D01", 20), batch_id="b" * 32))
    with pytest.raises(grpc.RpcError) as err:
        stub.PushBatch(seal(running.layout, "health", "ed_visits", ed_rows("D02", 20), batch_id="b" * 32))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert _records(running) == 20


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.mark.parametrize(
    ("part", "field"),
    [("ciphertext", "signature"), ("signature", "signature"), ("header", "signature")],
)
def test_tampered_batch_is_rejected_and_nothing_stored(running: Running, part: str, field: str) -> None:
    """Flipping one bit of the ciphertext, signature or header is rejected with INVALID_ARGUMENT naming the check, and nothing is stored."""
    batch = seal(running.layout, "health", "ed_visits", ed_rows("D01", 20))
    original = getattr(batch, part)
    # the last header byte sits in sealed_at, so the header still parses and the signature check is what fails
    setattr(batch, part, _flip(original, len(original) - 1 if part == "header" else len(original) // 2))
    with pytest.raises(grpc.RpcError) as err:
        running.ingest("agent:health").PushBatch(batch)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(field)
    assert _records(running) == 0


def test_validly_signed_batch_sealed_with_another_header_cannot_be_opened(running: Running) -> None:
    """A ciphertext sealed under one header and re-signed under another fails to open: the header is bound into the seal."""
    from cryptography.hazmat.primitives import serialization

    from agents._seal import signed_message

    a = seal(running.layout, "health", "ed_visits", ed_rows("D01", 20))
    b = seal(running.layout, "health", "ed_visits", ed_rows("D02", 20))
    key = serialization.load_pem_private_key(running.layout.signing_key("health").read_bytes(), password=None)
    forged = ingest_pb2.SealedBatch(
        header=b.header, ciphertext=a.ciphertext, signature=key.sign(signed_message(b.header, a.ciphertext))
    )  # type: ignore[union-attr,call-arg]
    with pytest.raises(grpc.RpcError) as err:
        running.ingest("agent:health").PushBatch(forged)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("ciphertext")
    assert _records(running) == 0


def test_out_of_domain_value_rejects_the_whole_batch_without_echoing_it(running: Running) -> None:
    """A dimension value outside the contract rejects the batch, names the column, and does not repeat the value."""
    rows = ed_rows("D01", 20)
    rows[3].dims["district"] = "SECRET-VALUE-42"
    with pytest.raises(grpc.RpcError) as err:
        running.ingest("agent:health").PushBatch(seal(running.layout, "health", "ed_visits", rows))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "district" in err.value.details()
    assert "SECRET-VALUE-42" not in err.value.details()
    assert _records(running) == 0


def test_agent_fetches_only_its_own_contract(running: Running) -> None:
    """The health agent gets the ed_visits contract and is refused the police one."""
    stub = running.ingest("agent:health")
    contract = stub.GetContract(ingest_pb2.GetContractRequest(dataset="ed_visits"))
    assert contract.owner_agency == "health"
    assert {c.name for c in contract.columns} >= {"district", "presentation", "length_of_stay_hours"}
    with pytest.raises(grpc.RpcError) as err:
        stub.GetContract(ingest_pb2.GetContractRequest(dataset="police_incidents"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
