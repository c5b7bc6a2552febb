"""``gateway db current|upgrade``, and ``gateway serve`` refusing a store behind head under
migrate = "check": the operator is told where the store stands and the command that fixes it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.pki import PkiLayout, init_dev_pki
from gateway.store import head_revision


@pytest.fixture
def pki(tmp_path: Path) -> PkiLayout:
    return init_dev_pki(tmp_path / "dev")


def _database(pki: PkiLayout) -> Path:
    return pki.root / "gateway.db"


def test_current_then_upgrade_then_current(pki: PkiLayout, capsys: pytest.CaptureFixture[str]) -> None:
    """On a new deployment `current` says the store is empty and names the upgrade command;
    `upgrade` brings it to head; `current` then says it is at head; a second upgrade changes
    nothing. Each exits 0."""
    config = str(pki.gateway_config)
    head = head_revision()
    assert main(["db", "current", "--config", config]) == 0
    assert "store: empty; this gateway's head is revision" in capsys.readouterr().out
    assert main(["db", "upgrade", "--config", config]) == 0
    assert f"upgraded (empty) to revision {head}" in capsys.readouterr().out
    assert main(["db", "current", "--config", config]) == 0
    assert f"at revision {head} (head)" in capsys.readouterr().out
    assert main(["db", "upgrade", "--config", config]) == 0
    assert f"already at revision {head} (head)" in capsys.readouterr().out


def test_serve_refuses_a_store_behind_head_under_check(
    pki: PkiLayout, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store an older gateway left at revision 0001 stops `gateway serve` with exit 2 under
    migrate = "check", naming the revision, the head and `gateway db upgrade`; after the
    upgrade the store is at head."""
    config = str(pki.gateway_config)
    assert main(["db", "upgrade", "--config", config]) == 0
    with sqlite3.connect(_database(pki)) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    capsys.readouterr()
    monkeypatch.setenv("DATASHARE_GATEWAY_STORE_MIGRATE", "check")
    assert main(["serve", "--config", config]) == 2
    err = capsys.readouterr().err
    assert "schema is at revision 0001" in err
    assert f"needs revision {head_revision()}" in err
    assert "gateway db upgrade" in err
    assert "Traceback" not in err
    assert main(["db", "upgrade", "--config", config]) == 0
    assert f"upgraded (at revision 0001) to revision {head_revision()}" in capsys.readouterr().out
