"""Keys handed over by systemd's LoadCredential= must load.

systemd >= 254 on a kernel with tmpfs `noswap` (Ubuntu 24.04, Debian 13, RHEL 10) writes each
credential root-owned, mode 0400, plus a POSIX ACL entry giving the service user read access; stat
then shows the ACL mask in the group bits (0440) although no group can read the file. (systemd 252
on ramfs chowns the file to the service user instead, 0400, which loads today.)
"""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import pytest

from agents._config import KeySettings
from agents._keys import FileKeySource
from agents.errors import ConfigError

NOBODY = 65534
_UNDEFINED = 0xFFFFFFFF


def _acl_read_for(uid: int, *, group_perm: int = 0) -> tuple[tuple[int, int, int], ...]:
    # struct posix_acl_xattr: version 2, then (tag, perm, id):
    # user::r, user:<uid>:r, group::<group_perm>, mask::r, other::-
    return (
        (1, 4, _UNDEFINED),
        (2, 4, uid),
        (4, group_perm, _UNDEFINED),
        (0x10, 4, _UNDEFINED),
        (0x20, 0, _UNDEFINED),
    )


def _systemd_credential(path: Path, data: bytes, *, reader: int | None = None, group_perm: int = 0) -> Path:
    """A file shaped like systemd's credential copy: 0400 plus an ACL read entry for the service
    user (this process's user unless `reader` says otherwise)."""
    path.write_bytes(data)
    path.chmod(0o400)
    entries = _acl_read_for(os.getuid() if reader is None else reader, group_perm=group_perm)
    blob = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)
    try:
        os.setxattr(path, "system.posix_acl_access", blob)
    except OSError as exc:
        if exc.errno in {errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM}:
            pytest.skip(f"this file system does not take POSIX ACLs ({exc.strerror})")
        raise
    assert path.stat().st_mode & 0o777 == 0o440  # what the agent sees
    return path


def test_linkage_key_loads_from_a_systemd_acl_credential(tmp_path: Path) -> None:
    """A linkage key written the way systemd >= 254 writes a credential (root-owned 0400 + ACL) loads."""
    key = _systemd_credential(tmp_path / "linkage.key", bytes(range(32)).hex().encode() + b"\n")
    settings = KeySettings(signing_key_id="health-1", linkage_key=key, signing_key=key)
    assert FileKeySource(settings).linkage_key() == bytes(range(32))


def test_an_acl_letting_another_user_read_the_key_is_refused(tmp_path: Path) -> None:
    """The ACL exception is for this service's user only: a key another user may read is refused."""
    other = NOBODY if os.getuid() != NOBODY else 0
    key = _systemd_credential(tmp_path / "linkage.key", bytes(range(32)).hex().encode(), reader=other)
    settings = KeySettings(signing_key_id="health-1", linkage_key=key, signing_key=key)
    with pytest.raises(ConfigError, match="accessible by group or others"):
        FileKeySource(settings).linkage_key()


def test_an_acl_letting_the_owning_group_read_the_key_is_refused(tmp_path: Path) -> None:
    """An ACL whose group entry grants read is a group-readable key, whatever the mode says."""
    key = _systemd_credential(tmp_path / "linkage.key", bytes(range(32)).hex().encode(), group_perm=4)
    settings = KeySettings(signing_key_id="health-1", linkage_key=key, signing_key=key)
    with pytest.raises(ConfigError, match="accessible by group or others"):
        FileKeySource(settings).linkage_key()
