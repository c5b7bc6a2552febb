"""Signed checkpoints of the audit log (DESIGN §10): the gateway's audit key (Ed25519) signs
``(seq, head hash, time, key id, kind)`` every N entries or T seconds, and when a prune leaves an
anchor. Pure functions; the store writes the checkpoints in the transaction of the entry they sign.

The hash chain alone cannot show that its newest entries were cut off, nor that the whole log
was rewritten with fresh hashes by someone with database access. A signature by a key that
never leaves the gateway, checked with its public key by an auditor who keeps the checkpoints
off-site, shows both: a checkpoint beyond the end of the log, or one whose head hash no longer
matches the entry at its seq.

The signed statement is canonical JSON (sorted keys, no whitespace) of the checkpoint's fields
and a fixed ``purpose``, so a signature over anything else (a batch, another log) never passes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# periodic: every N entries or T seconds; anchor: left by a prune; head: signed on request
CheckpointKind = Literal["periodic", "anchor", "head"]
KINDS: tuple[CheckpointKind, ...] = ("periodic", "anchor", "head")
STATEMENT_PURPOSE = "datashare audit log checkpoint v1"


class CheckpointFormatError(ValueError):
    """A checkpoint or key read from outside is malformed; the message names the field."""


@dataclass(frozen=True)
class Checkpoint:
    seq: int  # the entry whose hash is signed: the head of the log when it was made
    head_hash: str
    timestamp: str  # RFC 3339, UTC
    key_id: str
    kind: CheckpointKind
    signature: str  # base64 of the Ed25519 signature over ``statement``

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "head_hash": self.head_hash,
            "timestamp": self.timestamp,
            "key_id": self.key_id,
            "kind": self.kind,
            "signature": self.signature,
        }


@dataclass(frozen=True)
class CheckpointPolicy:
    """When the store signs (``[audit] checkpoint_every`` entries, ``checkpoint_seconds``) and
    with which key. 0 turns either trigger off."""

    key: Ed25519PrivateKey
    every: int = 1000
    seconds: int = 300

    def due(self, seq: int, last_seq: int, seconds_since_last: float | None) -> bool:
        """Whether entry ``seq`` gets a checkpoint, the last one being at ``last_seq`` (0: none)
        made ``seconds_since_last`` ago (None: none yet)."""
        if self.every and seq - last_seq >= self.every:
            return True
        since = seconds_since_last
        return bool(self.seconds) and (since is None or since >= self.seconds) and seq > last_seq


def key_id(public: Ed25519PublicKey) -> str:
    """Who signed: the first 16 hex digits of SHA-256 over the raw public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_pem(data: bytes) -> Ed25519PublicKey:
    """ValueError unless ``data`` is an Ed25519 public key in PEM form."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError("not a public key in PEM form") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointFormatError("not an Ed25519 public key")
    return key


def statement(seq: int, head_hash: str, timestamp: str, key: str, kind: str) -> bytes:
    doc = {
        "purpose": STATEMENT_PURPOSE,
        "seq": seq,
        "head_hash": head_hash,
        "timestamp": timestamp,
        "key_id": key,
        "kind": kind,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def sign_checkpoint(
    key: Ed25519PrivateKey, seq: int, head_hash: str, timestamp: str, kind: CheckpointKind
) -> Checkpoint:
    kid = key_id(key.public_key())
    signature = key.sign(statement(seq, head_hash, timestamp, kid, kind))
    return Checkpoint(seq, head_hash, timestamp, kid, kind, base64.b64encode(signature).decode("ascii"))


def signature_problem(checkpoint: Checkpoint, keys: Mapping[str, Ed25519PublicKey]) -> str | None:
    """What is wrong with a checkpoint's signature, in words, or None if it verifies."""
    public = keys.get(checkpoint.key_id)
    if public is None:
        return f"checkpoint at entry {checkpoint.seq} is signed by an unknown key ({checkpoint.key_id})"
    try:
        signature = base64.b64decode(checkpoint.signature, validate=True)
        public.verify(
            signature,
            statement(
                checkpoint.seq, checkpoint.head_hash, checkpoint.timestamp, checkpoint.key_id, checkpoint.kind
            ),
        )
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        return f"checkpoint at entry {checkpoint.seq}: signature does not verify (forged or altered)"
    return None


def checkpoint_from_json(doc: Any, where: str) -> Checkpoint:
    """A checkpoint read back from JSON (an exported file, a request); ValueError names the field."""
    if not isinstance(doc, Mapping):
        raise CheckpointFormatError(f"{where}: must be an object")
    seq = doc.get("seq")
    if type(seq) is not int or seq < 1:
        raise ValueError(f"{where}.seq: must be a whole number from 1")
    texts = {}
    for name in ("head_hash", "timestamp", "key_id", "kind", "signature"):
        value = doc.get(name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where}.{name}: must be non-empty text")
        texts[name] = value
    if texts["kind"] not in KINDS:
        raise ValueError(f"{where}.kind: must be one of {', '.join(KINDS)}")
    return Checkpoint(
        seq,
        texts["head_hash"],
        texts["timestamp"],
        texts["key_id"],
        texts["kind"],
        texts["signature"],
    )
