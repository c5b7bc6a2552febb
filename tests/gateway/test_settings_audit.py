"""``[audit] checkpoint_every`` / ``checkpoint_seconds``: when the log is signed, validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.pki import PkiLayout, init_dev_pki
from gateway.settings import GatewaySettings


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    return init_dev_pki(tmp_path_factory.mktemp("pki") / "dev")


def _with_audit(pki: PkiLayout, tmp_path: Path, body: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(pki.gateway_config.read_text() + f"\n[audit]\n{body}\n")
    return path


def test_checkpoints_default_to_every_1000_entries_or_5_minutes(pki: PkiLayout) -> None:
    """A gateway.toml without [audit] signs every 1000 entries and after 300 seconds."""
    audit = GatewaySettings.from_file(pki.gateway_config, environ={}).audit
    assert (audit.checkpoint_every, audit.checkpoint_seconds) == (1000, 300)


def test_the_file_and_the_environment_set_them(pki: PkiLayout, tmp_path: Path) -> None:
    """[audit] in the file sets both; DATASHARE_GATEWAY_AUDIT_CHECKPOINT_EVERY overrides the file."""
    path = _with_audit(pki, tmp_path, "checkpoint_every = 50\ncheckpoint_seconds = 0")
    audit = GatewaySettings.from_file(path, environ={}).audit
    assert (audit.checkpoint_every, audit.checkpoint_seconds) == (50, 0)
    environ = {"DATASHARE_GATEWAY_AUDIT_CHECKPOINT_EVERY": "7"}
    assert GatewaySettings.from_file(path, environ=environ).audit.checkpoint_every == 7


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("checkpoint_every = -1", "audit.checkpoint_every"),
        ('checkpoint_seconds = "soon"', "audit.checkpoint_seconds"),
        ("checkpoint_often = 3", "audit.checkpoint_often"),
    ],
    ids=["negative", "not-a-number", "unknown-key"],
)
def test_a_bad_value_names_the_key(pki: PkiLayout, tmp_path: Path, body: str, key: str) -> None:
    """A negative count, a word for seconds or an unknown key is a ConfigError naming audit.<key>."""
    with pytest.raises(ConfigError, match=key):
        GatewaySettings.from_file(_with_audit(pki, tmp_path, body), environ={})
