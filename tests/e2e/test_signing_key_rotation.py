"""Signing-key rotation: a new key made by `agent keygen`, enrolled beside the old one; batches signed
by either are accepted during the overlap (spooled ones included); after it, the old key is refused."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from types import MappingProxyType

import pytest
from e2e_harness import Running, _Serve

from agents.cli import main as agent
from gateway._settings import AgencySettings, GatewaySettings
from gateway.demo import generate, write_agent_configs
from gateway.pki import PkiLayout, init_dev_pki


@pytest.fixture
def layout(tmp_path: Path) -> PkiLayout:
    return init_dev_pki(tmp_path / "pki", listen="127.0.0.1:0")


def _serve(layout: PkiLayout, db: Path, keys: dict[str, Path]) -> _Serve:
    """The gateway of this PKI with exactly `keys` enrolled for health."""
    settings = GatewaySettings.from_file(layout.gateway_config)
    agencies = dict(settings.agencies)
    agencies["health"] = AgencySettings(MappingProxyType(keys))
    settings = dataclasses.replace(settings, agencies=MappingProxyType(agencies))
    return _Serve(settings, f"sqlite:///{db}", layout)


@pytest.fixture
def agent_config(layout: PkiLayout, tmp_path: Path) -> Path:
    generate(tmp_path / "data", people=150)
    return write_agent_configs(layout.root, tmp_path / "data", batch_size=100)["health"]


def _point(config: Path, running: Running | None, **keys: str) -> None:
    """Aim the agent config at a gateway (or a closed port) and, optionally, another signing key."""
    text = config.read_text()
    address = running.address if running else "127.0.0.1:9"
    text = re.sub(r'(?m)^address = ".*"$', f'address = "{address}"', text)
    text = re.sub(r"(?m)^retries = \d+$", "retries = 0", text)
    for key, value in keys.items():
        text = re.sub(rf'(?m)^{key} = ".*"$', f'{key} = "{value}"', text)
    config.write_text(text)


def test_batches_signed_by_the_old_and_the_new_key_are_both_accepted_during_the_overlap(
    layout: PkiLayout, agent_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A batch spooled under the old key and batches sealed under the new one land in one run."""
    new_key = tmp_path / "health-2.key"
    assert agent(["keygen", "--out", str(new_key), "--key-id", "health-2", "--agency", "health"]) == 0
    assert new_key.stat().st_mode & 0o077 == 0
    new_pub = Path(f"{new_key}.pub")
    db = tmp_path / "gw.db"
    # the old key retired too early: its first batch is refused and waits in the spool
    with _serve(layout, db, {"health-2": new_pub}) as running:
        _point(agent_config, running)
        assert agent(["push", "--config", str(agent_config), "--quiet"]) == 4
    capsys.readouterr()

    both = {"health-1": layout.signing_pub("health"), "health-2": new_pub}
    with _serve(layout, db, both) as running:
        _point(agent_config, running, signing_key=str(new_key), signing_key_id="health-2")
        assert agent(["push", "--config", str(agent_config), "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["resent"] >= 1  # health-1 batches from the spool (more were sealed in flight)
        assert summary["stored"] == summary["batches"] > 1  # and the rest under health-2
        assert running.stored_rows("ed_visits") == summary["sent"]


def test_after_the_overlap_a_batch_signed_by_the_retired_key_is_refused(
    layout: PkiLayout, agent_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With only the new key enrolled, the old key's batch is refused (exit 4) and stays in the spool."""
    new_key = tmp_path / "health-2.key"
    assert agent(["keygen", "--out", str(new_key), "--key-id", "health-2", "--agency", "health"]) == 0
    with _serve(layout, tmp_path / "gw.db", {"health-2": Path(f"{new_key}.pub")}) as running:
        _point(agent_config, running)  # still signing with health-1
        assert agent(["push", "--config", str(agent_config)]) == 4
        assert "signing_key_id" in capsys.readouterr().err
        assert running.stored_rows("ed_visits") == 0

        _point(agent_config, running, signing_key=str(new_key), signing_key_id="health-2")
        # one call on the wire at a time: with two, a batch the new key sealed could land beside
        # the refused one, and whether it does is a matter of timing
        text = agent_config.read_text()
        assert "retries = 0\n" in text
        agent_config.write_text(text.replace("retries = 0\n", "retries = 0\nmax_in_flight = 1\n", 1))
        assert agent(["push", "--config", str(agent_config)]) == 4  # the spooled batch is still old-signed
        assert running.stored_rows("ed_visits") == 0


def test_keygen_never_overwrites_a_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second keygen to the same file is refused (exit 2) and the first key is unchanged."""
    key = tmp_path / "k.key"
    assert agent(["keygen", "--out", str(key), "--key-id", "k-1", "--agency", "health"]) == 0
    before = key.read_bytes()

    assert agent(["keygen", "--out", str(key), "--key-id", "k-2", "--agency", "health"]) == 2

    assert key.read_bytes() == before
    assert "never overwritten" in capsys.readouterr().err
