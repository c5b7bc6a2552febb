"""``[store] indexes``: the store's index profile in gateway.toml or the environment, validated."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.pki import PkiLayout, init_dev_pki
from gateway.settings import GatewaySettings


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    return init_dev_pki(tmp_path_factory.mktemp("pki") / "dev")


def _with_store_line(pki: PkiLayout, tmp_path: Path, line: str) -> Path:
    text = pki.gateway_config.read_text()
    assert "[store]\n" in text  # the edit must land, or the test checks nothing
    path = tmp_path / "gateway.toml"
    path.write_text(text.replace("[store]\n", f"[store]\n{line}\n", 1))
    return path


def test_the_profile_defaults_to_ingest(pki: PkiLayout) -> None:
    """A gateway.toml that says nothing about indexes gets the lean ingest profile."""
    assert GatewaySettings.from_file(pki.gateway_config, environ={}).store.indexes == "ingest"


def test_the_profile_is_read_from_the_file(pki: PkiLayout, tmp_path: Path) -> None:
    """indexes = "query" in [store] is carried into the settings."""
    path = _with_store_line(pki, tmp_path, 'indexes = "query"')
    assert GatewaySettings.from_file(path, environ={}).store.indexes == "query"


def test_the_environment_overrides_the_profile(pki: PkiLayout) -> None:
    """DATASHARE_GATEWAY_STORE_INDEXES overrides the file, as every scalar key can be."""
    environ = {"DATASHARE_GATEWAY_STORE_INDEXES": "query"}
    assert GatewaySettings.from_file(pki.gateway_config, environ=environ).store.indexes == "query"


def test_an_unknown_profile_names_the_file_and_key(pki: PkiLayout, tmp_path: Path) -> None:
    """A profile that does not exist is a ConfigError naming the file, store.indexes and the choices."""
    path = _with_store_line(pki, tmp_path, 'indexes = "fast"')
    message = rf"^{re.escape(str(path))}: store\.indexes: must be one of ingest, query$"
    with pytest.raises(ConfigError, match=message):
        GatewaySettings.from_file(path, environ={})
