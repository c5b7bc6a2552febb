"""``[store]`` pool, timeouts and migrate mode: typed, bounded, defaulted as documented in
gateway/store/_engine.py and _migrate.py, overridable from the environment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.pki import PkiLayout, init_dev_pki
from gateway.settings import GatewaySettings
from gateway.store import StoreSettings


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    return init_dev_pki(tmp_path_factory.mktemp("pki") / "dev")


def _with_store_lines(pki: PkiLayout, tmp_path: Path, *lines: str) -> Path:
    text = pki.gateway_config.read_text()
    assert "[store]\n" in text  # the edit must land, or the test checks nothing
    path = tmp_path / "gateway.toml"
    path.write_text(text.replace("[store]\n", "[store]\n" + "".join(f"{line}\n" for line in lines), 1))
    return path


def test_unset_keys_take_the_documented_defaults(pki: PkiLayout) -> None:
    """A gateway.toml that names no pool or timeout gets StoreSettings' defaults, and no migrate
    mode (the backend then chooses: auto for SQLite, check for PostgreSQL)."""
    connection = GatewaySettings.from_file(pki.gateway_config, environ={}).store.connection
    assert connection == StoreSettings()
    assert connection.migrate is None


def test_every_key_is_read_from_the_file(pki: PkiLayout, tmp_path: Path) -> None:
    """Each pool and timeout key and migrate in [store] reach the store's settings."""
    path = _with_store_lines(
        pki,
        tmp_path,
        "pool_size = 3",
        "max_overflow = 0",
        "pool_timeout_s = 2",
        "pool_recycle_s = 600",
        "connect_timeout_s = 1",
        "statement_timeout_ms = 5000",
        "lock_timeout_ms = 250",
        "idle_in_transaction_timeout_ms = 9000",
        'migrate = "check"',
    )
    connection = GatewaySettings.from_file(path, environ={}).store.connection
    assert connection == StoreSettings(
        pool_size=3,
        max_overflow=0,
        pool_timeout_s=2,
        pool_recycle_s=600,
        connect_timeout_s=1,
        statement_timeout_ms=5000,
        lock_timeout_ms=250,
        idle_in_transaction_timeout_ms=9000,
        migrate="check",
    )


def test_the_environment_overrides_a_timeout_and_the_mode(pki: PkiLayout) -> None:
    """DATASHARE_GATEWAY_STORE_LOCK_TIMEOUT_MS and ..._MIGRATE override the file."""
    environ = {"DATASHARE_GATEWAY_STORE_LOCK_TIMEOUT_MS": "1500", "DATASHARE_GATEWAY_STORE_MIGRATE": "auto"}
    connection = GatewaySettings.from_file(pki.gateway_config, environ=environ).store.connection
    assert (connection.lock_timeout_ms, connection.migrate) == (1500, "auto")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("pool_size = 0", r"store\.pool_size: must be from 1 to 1000"),
        ("lock_timeout_ms = 5", r"store\.lock_timeout_ms: must be from 100 to 3600000"),
        ('statement_timeout_ms = "60s"', r"store\.statement_timeout_ms: must be an integer"),
        ('migrate = "always"', r"store\.migrate: must be one of auto, check"),
    ],
)
def test_a_bad_value_names_the_file_and_key(pki: PkiLayout, tmp_path: Path, line: str, message: str) -> None:
    """A value out of bounds or of the wrong kind is a ConfigError naming the file and the key."""
    path = _with_store_lines(pki, tmp_path, line)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: {message}$"):
        GatewaySettings.from_file(path, environ={})
