"""`agent keygen`: a key pair written whole or not at all, and only for a valid agency name."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from agents.cli import main


@pytest.mark.parametrize(
    "agency",
    ['health"]\nevil = "x', "Health", "", "_police", "a" * 64],
    ids=["toml-breakout", "upper-case", "empty", "leading-underscore", "too-long"],
)
def test_an_agency_name_the_config_would_refuse_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], agency: str
) -> None:
    """--agency must match the config's agency rule (it is pasted into TOML): exit 2, no file."""
    key = tmp_path / "k.key"
    assert main(["keygen", "--out", str(key), "--key-id", "k-1", "--agency", agency]) == 2
    assert "--agency: must be lower-case letters" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_pair_is_written_with_owner_only_private_key(tmp_path: Path) -> None:
    """The private key is mode 0600, the public key sits beside it as FILE.pub."""
    key = tmp_path / "k.key"
    assert main(["keygen", "--out", str(key), "--key-id", "k-1", "--agency", "health", "--json"]) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (tmp_path / "k.key.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")


def test_an_existing_public_key_file_leaves_no_private_key_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """If FILE.pub already exists, keygen refuses (exit 2) and writes neither file."""
    key = tmp_path / "k.key"
    (tmp_path / "k.key.pub").write_text("someone else's\n")
    assert main(["keygen", "--out", str(key), "--key-id", "k-1", "--agency", "health"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert not key.exists()
    assert (tmp_path / "k.key.pub").read_text() == "someone else's\n"


def test_a_failed_public_key_write_removes_the_private_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """When the public key cannot be created (its name is taken by a dangling symlink, which
    O_EXCL refuses), the private key just written is removed: no half pair is left."""
    key = tmp_path / "k.key"
    (tmp_path / "k.key.pub").symlink_to(tmp_path / "nowhere")  # exists() is False, O_EXCL fails
    assert main(["keygen", "--out", str(key), "--key-id", "k-1", "--agency", "health"]) == 2
    assert "cannot write the key" in capsys.readouterr().err
    assert not key.exists()
