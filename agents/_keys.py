"""Where the agent's secrets come from: a KeySource (files now; an environment or vault later).

Private key files must be readable by their owner only: a key file with any group or other
permission bit set is refused, naming the file, before a byte of it is used. The one exception
is the shape systemd's LoadCredential= gives a key (root-owned 0400 plus an ACL that lets only
this service's user read it), whose mode shows 0440 although no group can read it.

Accepted encodings (whichever the PKI tooling wrote):
  linkage key      hex text of at least 32 bytes (64 hex digits), surrounding whitespace ignored
  signing key      Ed25519 private key as PEM (PKCS#8), or hex text of the 32-byte raw key
  gateway HPKE key X25519 public key as PEM (SubjectPublicKeyInfo), hex text, or 32 raw bytes
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from agents._config import GatewaySettings, KeySettings
from agents.errors import ConfigError

MIN_LINKAGE_KEY_BYTES = 32
_MAX_KEY_FILE_BYTES = 1 << 16


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    private_key: Ed25519PrivateKey


class KeySource(Protocol):
    """The two secrets an agent holds: the consortium linkage key and its own signing key."""

    def linkage_key(self) -> bytes: ...

    def signing_key(self) -> SigningKey: ...


@dataclass(frozen=True)
class FileKeySource:
    """Keys read from owner-only files, or environment variables, as the [keys] table says.

    An environment variable suits a service manager that injects secrets (systemd's
    `LoadCredential=` gives owner-only files instead, which is better: use the file form then).
    """

    settings: KeySettings
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    def linkage_key(self) -> bytes:
        where, data = self._read(self.settings.linkage_key, self.settings.linkage_key_env, "linkage_key")
        try:
            key = bytes.fromhex(data.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError) as exc:
            holder = "linkage key file" if self.settings.linkage_key else "linkage key"
            raise ConfigError(f"{where}: {holder} must hold hex text") from exc
        if len(key) < MIN_LINKAGE_KEY_BYTES:
            raise ConfigError(
                f"{where}: linkage key must be at least {MIN_LINKAGE_KEY_BYTES} bytes (256 bits)"
            )
        return key

    def signing_key(self) -> SigningKey:
        where, data = self._read(self.settings.signing_key, self.settings.signing_key_env, "signing_key")
        return SigningKey(self.settings.signing_key_id, _ed25519_private(where, data))

    def _read(self, path: Path | None, variable: str | None, key: str) -> tuple[str, bytes]:
        if path is not None:
            return str(path), read_private_file(path)
        if variable is None:  # the config loader guarantees one of the two
            raise ConfigError(f"keys.{key}: neither a file nor an environment variable is configured")
        value = self.environ.get(variable, "").strip()
        where = f"environment variable {variable} (keys.{key}_env)"
        if not value:
            raise ConfigError(f"{where}: is not set or empty")
        return where, value.encode("utf-8", "surrogateescape")


def key_source(settings: KeySettings) -> KeySource:
    """The KeySource the [keys] table describes."""
    return FileKeySource(settings)


def read_private_file(path: Path) -> bytes:
    """The bytes of an owner-only file; ConfigError naming the file otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the key file ({exc.strerror or exc})") from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: key file is not a regular file")
        if info.st_mode & 0o077 and not _read_only_for_me_by_acl(handle.fileno(), info):
            raise ConfigError(f"{path}: key file is accessible by group or others; run: chmod 600 {path}")
        data = handle.read(_MAX_KEY_FILE_BYTES + 1)
    if not data or len(data) > _MAX_KEY_FILE_BYTES:
        raise ConfigError(f"{path}: key file is empty or far too large")
    return data


_ACL_XATTR = "system.posix_acl_access"
_ACL_USER_OBJ, _ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP, _ACL_MASK, _ACL_OTHER = 1, 2, 4, 8, 0x10, 0x20
_ACL_ENTRY = struct.Struct("<HHI")


def _read_only_for_me_by_acl(fd: int, info: os.stat_result) -> bool:
    """True for the shape systemd (>= 254) gives a LoadCredential= file: owned by root or by this
    user, mode 0400 plus an ACL that lets this user (and nobody else) read it. `stat` then shows
    the ACL mask in the group bits (0440) although no group can read the file."""
    me = os.getuid()
    if info.st_uid not in (0, me) or info.st_mode & 0o037:  # group write/exec, or any bit for others
        return False
    try:
        blob = os.getxattr(fd, _ACL_XATTR)
    except (OSError, AttributeError):
        return False
    return _acl_grants_read_to_only(blob, me)


def _acl_grants_read_to_only(blob: bytes, me: int) -> bool:
    """A POSIX ACL (xattr form) in which no group and no other user may read, and `me` may not write."""
    if len(blob) < 4 or (len(blob) - 4) % _ACL_ENTRY.size or struct.unpack_from("<I", blob)[0] != 2:
        return False
    for offset in range(4, len(blob), _ACL_ENTRY.size):
        tag, perm, who = _ACL_ENTRY.unpack_from(blob, offset)
        if tag not in (_ACL_USER_OBJ, _ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP, _ACL_MASK, _ACL_OTHER):
            return False
        if tag in (_ACL_GROUP_OBJ, _ACL_GROUP, _ACL_OTHER) and perm:
            return False
        if tag == _ACL_USER and (who != me or perm & 0o3):  # read for this user only, never write
            return False
    return True


def read_public_file(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from exc
    if not data:
        raise ConfigError(f"{path}: the {what} file is empty")
    return data


def load_hpke_public_key(path: Path) -> X25519PublicKey:
    """The gateway's X25519 public key that batches are sealed to."""
    data = read_public_file(path, "gateway HPKE public key")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
            if not isinstance(key, X25519PublicKey):
                raise ConfigError(f"{path}: the gateway HPKE public key must be an X25519 key")
            return key
        raw = data if len(data) == 32 else bytes.fromhex(data.decode("ascii").strip())
        return X25519PublicKey.from_public_bytes(raw)
    except (ValueError, UnicodeDecodeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{path}: not an X25519 public key (PEM, hex or 32 raw bytes)") from exc


def load_tls_material(settings: GatewaySettings) -> tuple[bytes, bytes, bytes]:
    """(CA bundle, client private key, client certificate chain) for mutual TLS."""
    return (
        read_public_file(settings.ca, "CA certificate"),
        read_private_file(settings.key),
        read_public_file(settings.cert, "client certificate"),
    )


def _ed25519_private(path: Path | str, data: bytes) -> Ed25519PrivateKey:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(data, password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ConfigError(f"{path}: the signing key must be an Ed25519 key")
            return key
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(data.decode("ascii").strip()))
    except (ValueError, TypeError, UnicodeDecodeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{path}: not an unencrypted Ed25519 private key (PEM or hex)") from exc
